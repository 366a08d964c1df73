r"""The guidance samplers of App. C, one module each: ``opt`` (Algorithm 1,
:mod:`~sedge_pyro.inference.opt`) and ``dps`` (Algorithm 2, :mod:`~sedge_pyro.inference.dps`).

This module keeps their names importable from where they were.
"""

from sedge_pyro.inference.dps import (
    GUIDANCE_SCHEDULES,
    GUIDE_ON,
    DPSInfo,
    DPSState,
    dps_init,
    dps_step,
    sample_dps,
)
from sedge_pyro.inference.opt import (
    OPT_STEPS,
    OptInfo,
    OptState,
    opt_init,
    opt_step,
    sample_opt,
)

__all__ = [
    "GUIDANCE_SCHEDULES",
    "GUIDE_ON",
    "OPT_STEPS",
    "DPSInfo",
    "DPSState",
    "OptInfo",
    "OptState",
    "dps_init",
    "dps_step",
    "opt_init",
    "opt_step",
    "sample_dps",
    "sample_opt",
]
