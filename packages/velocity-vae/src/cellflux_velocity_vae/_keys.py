"""The AnnData keys cellflux-velocity-vae reads and writes, in one place."""

from __future__ import annotations

from typing import Final

__all__ = ["Key"]


class Key:
    """Default layer, obs, var and uns names of the velocity VAE."""

    # inputs (scVelo's first-order moments)
    SPLICED: Final = "Ms"
    UNSPLICED: Final = "Mu"
    # layers written by ``tl.velocity_vae`` (``vkey`` prefix)
    VELOCITY: Final = "velocity"
    VELOCITY_U_SUFFIX: Final = "_u"
    VARIANCE_PREFIX: Final = "variance_"  # scVelo's ``variance_velocity``
    FIT_T: Final = "fit_t"
    # obs
    LATENT_TIME: Final = "latent_time"
    # var (scVelo's ``fit_*`` names for the dynamical rates)
    FIT_PREFIX: Final = "fit_"
    # var rates written only with a time-dependent transcription rate
    TIME_DEPENDENT_RATES: Final = ("alpha_1", "lambda_alpha")
    # uns[key_added]
    SAMPLES: Final = "velocity_samples"
    # default key_added
    KEY_ADDED: Final = "velocity_vae"
    # obs / var written by the moments helper
    MOMENTS_CONNECTIVITIES: Final = "velocity_vae_connectivities"
    # columns of the directional statistics (scvi-tools' names)
    DIRECTIONAL: Final = (
        "directional_variance",
        "directional_difference",
        "directional_cosine_sim_variance",
        "directional_cosine_sim_difference",
        "directional_cosine_sim_mean",
    )
