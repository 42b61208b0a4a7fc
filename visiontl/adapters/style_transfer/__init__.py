"""Neural style transfer on a frozen registry backbone (VGG19 by default): per-image
optimisation (``stylize``) and a fast feed-forward model trained through the engine
(``Stylizer``)."""
from ..._lazy import exports

_WHERE = {"Stylizer": ".adapter", "StylizeConfig": ".config", "content_loss": ".loss", "gram": ".loss",
          "style_loss": ".loss", "total_variation": ".loss", "CONTENT_LAYERS": ".optimize",
          "STYLE_LAYERS": ".optimize", "StylizeOptions": ".optimize", "Stylized": ".optimize", "stylize": ".optimize",
          "FeatureTaps": ".taps", "named_layers": ".taps"}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)
