"""Components of the SEDGE model: specification likelihoods, feature priors, masks, the model."""

from sedge_pyro.models.base import ConditionalDensity, Prior, data_plate
from sedge_pyro.models.columns import Column, Columns
from sedge_pyro.models.composed import ComposedDiffusion
from sedge_pyro.models.conditional import NearestNeighbourConditional
from sedge_pyro.models.convert import convert
from sedge_pyro.models.cvae import ConditionalImageVAE
from sedge_pyro.models.dual import DualDivergencePrior, DualEmbedding
from sedge_pyro.models.factorized import FactorizedPrior
from sedge_pyro.models.image import ImageSEDGE
from sedge_pyro.models.judge import AttributeClassifier
from sedge_pyro.models.latent import LatentSEDGE
from sedge_pyro.models.likelihoods import (
    BernoulliMLP,
    CategoricalMLP,
    ConditionalFlow,
    GaussianMLP,
    JointGaussian,
)
from sedge_pyro.models.masks import SigmoidMask
from sedge_pyro.models.nets import mlp
from sedge_pyro.models.priors import DiffusionPrior, EmpiricalPrior, FlowPrior, GaussianPrior
from sedge_pyro.models.sedge import STRUCTURES, SEDGEModel

__all__ = [
    "STRUCTURES",
    "AttributeClassifier",
    "BernoulliMLP",
    "CategoricalMLP",
    "Column",
    "Columns",
    "ComposedDiffusion",
    "ConditionalDensity",
    "ConditionalFlow",
    "ConditionalImageVAE",
    "DiffusionPrior",
    "DualDivergencePrior",
    "DualEmbedding",
    "EmpiricalPrior",
    "FactorizedPrior",
    "FlowPrior",
    "GaussianMLP",
    "GaussianPrior",
    "ImageSEDGE",
    "JointGaussian",
    "LatentSEDGE",
    "NearestNeighbourConditional",
    "Prior",
    "SEDGEModel",
    "SigmoidMask",
    "convert",
    "data_plate",
    "mlp",
]
