"""Components of the SEDGE model: specification likelihoods, feature priors, masks, the model."""

from sedge_pyro.models.base import ConditionalDensity, Prior, data_plate
from sedge_pyro.models.columns import Column, Columns
from sedge_pyro.models.composed import ComposedDiffusion
from sedge_pyro.models.conditional import NearestNeighbourConditional
from sedge_pyro.models.dual import DualDivergencePrior, DualEmbedding
from sedge_pyro.models.factorized import FactorizedPrior
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
from sedge_pyro.models.sedge import STRUCTURES, SEDGEProgram

__all__ = [
    "STRUCTURES",
    "BernoulliMLP",
    "CategoricalMLP",
    "Column",
    "Columns",
    "ComposedDiffusion",
    "ConditionalDensity",
    "ConditionalFlow",
    "DiffusionPrior",
    "DualDivergencePrior",
    "DualEmbedding",
    "EmpiricalPrior",
    "FactorizedPrior",
    "FlowPrior",
    "GaussianMLP",
    "GaussianPrior",
    "JointGaussian",
    "LatentSEDGE",
    "NearestNeighbourConditional",
    "Prior",
    "SEDGEProgram",
    "SigmoidMask",
    "data_plate",
    "mlp",
]

#: names that lived here before the layout of issue 23 -> where they are now
_MOVED = {
    "ImageSEDGE": "sedge_pyro.experiments.ImageSEDGE",
    "ConditionalImageVAE": "sedge_pyro.experiments.ConditionalImageVAE",
    "AttributeClassifier": "sedge_pyro.experiments.AttributeClassifier",
    "convert": "sedge_pyro.convert",
    "SEDGEModel": "sedge_pyro.SEDGEModel (sedge_pyro.inference.SEDGEModel)",
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        raise AttributeError(
            f"sedge_pyro.models.{name} has moved: use {_MOVED[name]} (the layers of "
            "docs/architecture.md keep components below the samplers and the experiments)"
        )
    raise AttributeError(f"module 'sedge_pyro.models' has no attribute {name!r}")
