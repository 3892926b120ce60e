"""Explorers: controls + one picture, nothing else.

Every explorer renders into an ``ipywidgets.Image`` (PNG bytes) rather than an
``Output`` area: one picture replaced, no flicker; a test can set a control's ``.value``
and look at the new picture; the stored notebook keeps the last picture. Compute lives in
the other modules, the pictures in ``figures``. One file per explorer; ``base`` holds what
they share, ``choices`` what they offer.
"""

from .base import ClassExplorer, Explorer, cached_model
from .choices import choose_image, image_choices, image_controls, my_images_dir
from .optvis import ActivationMaxExplorer
from .cam import CAMExplorer, GradCAMExplorer, GuidedGradCAMExplorer
from .compare import CompareExplorer
from .evaluation import EvaluationExplorer
from .feature_maps import FeatureMapExplorer
from .filters import FilterExplorer
from .graphs import GraphExplorer
from .leaderboard import LeaderboardExplorer
from .prediction import PredictionExplorer
from .saliency import SaliencyExplorer
from .shortcut import ShortcutExplorer

__all__ = ["ActivationMaxExplorer", "CAMExplorer", "ClassExplorer", "CompareExplorer", "EvaluationExplorer",
           "Explorer", "FeatureMapExplorer", "FilterExplorer", "GradCAMExplorer", "GraphExplorer",
           "GuidedGradCAMExplorer", "LeaderboardExplorer", "PredictionExplorer", "SaliencyExplorer", "ShortcutExplorer",
           "cached_model", "choose_image", "image_choices", "image_controls", "my_images_dir"]
