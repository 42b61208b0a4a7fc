"""Neural style transfer on a frozen registry backbone (VGG19 by default): per-image
optimisation (``stylize``) and a fast feed-forward model trained through the engine
(``Stylizer``)."""
from .adapter import Stylizer
from .config import StylizeConfig
from .loss import content_loss, gram, style_loss, total_variation
from .optimize import CONTENT_LAYERS, STYLE_LAYERS, StylizeOptions, Stylized, stylize
from .taps import FeatureTaps, named_layers

__all__ = ["CONTENT_LAYERS", "STYLE_LAYERS", "FeatureTaps", "StylizeConfig", "Stylizer", "StylizeOptions", "Stylized", "content_loss", "gram",
           "named_layers", "style_loss", "stylize", "total_variation"]
