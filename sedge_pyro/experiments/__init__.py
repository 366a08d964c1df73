"""Experiments beside the core: the paper's synthetic demo and the image experiment.

They use the core (graph, identification, models, samplers) the way a user would, and sit
above it and below the command line: ``sedge demo`` runs :mod:`.paper`, ``sedge images`` runs
:mod:`.images`. The image experiment brings its own models: the concept model
:class:`ImageSEDGE`, the pixel baseline :class:`ConditionalImageVAE` and the independent judge
:class:`AttributeClassifier`.
"""

from sedge_pyro.experiments.cvae import ConditionalImageVAE
from sedge_pyro.experiments.image_sedge import ImageSEDGE
from sedge_pyro.experiments.judge import AttributeClassifier

__all__ = ["AttributeClassifier", "ConditionalImageVAE", "ImageSEDGE"]
