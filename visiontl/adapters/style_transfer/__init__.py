"""Neural style transfer on a frozen registry backbone (VGG19 by default): per-image
optimisation (``stylize``). The fast feed-forward model and its adapter come next."""
from .loss import content_loss, gram, style_loss, total_variation
from .optimize import CONTENT_LAYERS, STYLE_LAYERS, StylizeOptions, Stylized, stylize
from .taps import FeatureTaps, named_layers

__all__ = ["CONTENT_LAYERS", "STYLE_LAYERS", "FeatureTaps", "StylizeOptions", "Stylized", "content_loss", "gram",
           "named_layers", "style_loss", "stylize", "total_variation"]
