"""VELOVI: RNA velocity by variational inference on scvi-tools base classes.

``cellflux_velocity_vae.VELOVI`` is the model (scvi-tools' ``BaseModelClass`` with ``VAEMixin`` and
``UnsupervisedTrainingMixin``), ``VELOVAE`` its module, ``preprocess_data`` the preparation veloVI
needs, and ``cf.tl.velocity_vae`` the one-call tool that writes velocity, latent time, rates and
uncertainty for the kernels.
"""

from cellflux.plugin import lazy_exports

from ._version import __version__

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "REGISTRY_KEYS": "._constants:REGISTRY_KEYS",
        "VELOVAE": "._module:VELOVAE",
        "VELOVI": "._model:VELOVI",
        "default_max_epochs": "._model:default_max_epochs",
        "directional_statistics": "._uncertainty:directional_statistics",
        "fit_steady_state": "._steady_state:fit_steady_state",
        "fit_stochastic": "._steady_state:fit_stochastic",
        "knn_moments": "._moments:knn_moments",
        "moments": "._moments:moments",
        "preprocess_data": "._preprocess:preprocess_data",
        "second_order_moments": "._moments:second_order_moments",
        "velocity_vae": "._tools:velocity_vae",
    },
)
__all__ = [*__all__, "__version__"]
