"""Built-in plugin: scores from public diffusion models.

* ``edm``: NVlabs EDM / EDM2 network pickles (local path or URL, conditional or not). Loading a
  pickle runs code stored in it, so it needs ``--trust-pickle``; pagbench resolves the pickle's
  persistence globals with its own unpickler and vendors no NVIDIA code.
* ``diffusers``: an ε-prediction UNet with its scheduler (optional extra ``pagbench[diffusers]``).

Both return scores in [0,1] pixel units at σ in [0,1] units (σ₋₁ = 2σ, score = 2·score₋₁).
"""

from pagbench import ScoreProviderEntry, hookimpl


def _edm(dataset, options):
    from .providers import EdmScores

    return EdmScores(dataset, options)


def _diffusers(dataset, options):
    from .providers import DiffusersScores

    return DiffusersScores(dataset, options)


@hookimpl
def register_score_providers(register):
    register(ScoreProviderEntry("edm", _edm, "EDM/EDM2 network pickle (options path=FILE|URL, uncond_path, sha256/uncond_sha256 pins; needs --trust-pickle); default σ 0.05.",
                                options=("path", "url", "uncond_path", "sha256", "uncond_sha256", "trust_pickle", "device", "chunk")))
    register(ScoreProviderEntry("diffusers", _diffusers, "diffusers ε-prediction UNet + scheduler (option path; extra pagbench[diffusers]); default σ 0.05.",
                                options=("path", "subfolder", "device", "chunk")))
