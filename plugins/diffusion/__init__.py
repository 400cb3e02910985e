"""Built-in plugin: scores from public diffusion models.

* ``edm``: NVlabs EDM / EDM2 network pickles (local path or URL, conditional or not). The
  published architectures (SongUNet DDPM++/NCSN++, DhariwalUNet/ADM; EDM/VP/VE/iDDPM
  preconditioning) are rebuilt as pagbench's own modules from the file's tensors and constructor
  arguments, running nothing from it (``edm_restricted``, ``edm_networks``,
  ``edm_preconditioning``); any other class means running code stored in the pickle, which needs
  ``--trust-pickle``. pagbench vendors no NVIDIA code.
* ``diffusers``: an ε-prediction UNet with its scheduler (optional extra ``pagbench[diffusers]``).

Both return scores in [0,1] pixel units at σ in [0,1] units (σ₋₁ = 2σ, score = 2·score₋₁).
"""

from pagbench.plugin import ScoreProviderEntry, hookimpl


def _edm(dataset, options):
    from .providers import EdmScores

    return EdmScores(dataset, options)


def _diffusers(dataset, options):
    from .providers import DiffusersScores

    return DiffusersScores(dataset, options)


@hookimpl
def register_score_providers(register):
    register(ScoreProviderEntry("edm", _edm, "EDM/EDM2 network pickle (options path=FILE|URL, default: the dataset's asset, asset=NAME, uncond_path, sha256/uncond_sha256 pins; --trust-pickle only for classes pagbench does not implement); default σ 0.05.",
                                options=("path", "url", "asset", "uncond_path", "sha256", "uncond_sha256", "trust_pickle", "device", "chunk")))
    register(ScoreProviderEntry("diffusers", _diffusers, "diffusers ε-prediction UNet + scheduler (option path; extra pagbench[diffusers]); default σ 0.05.",
                                options=("path", "subfolder", "device", "chunk")))


#: NVIDIA's published EDM networks the paper's reference code uses (models/diffusion_model.py in
#: tml-tuebingen/pags): no published hash, so the first download is pinned. Sizes are approximate.
EDM_PRETRAINED = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/"


@hookimpl
def register_assets(register):
    from pagbench.plugin import AssetEntry

    licence = "CC BY-NC-SA 4.0 (NVIDIA EDM)"
    register(AssetEntry(
        name="edm-cifar10-32x32-uncond-vp", filename="edm-cifar10-32x32-uncond-vp.pkl",
        url=EDM_PRETRAINED + "edm-cifar10-32x32-uncond-vp.pkl", size=224_000_000, licence=licence,
        description="EDM DDPM++/VP SongUNet, CIFAR-10 32x32, unconditional (55.7 M parameters; size approximate)",
        datasets=("cifar10",), metrics=("score_cosine", "lpips_alignment", "on_manifold_fraction", "manifold_robustness"),
        providers=("edm",)))
    register(AssetEntry(
        name="edm-imagenet-64x64-cond-adm", filename="edm-imagenet-64x64-cond-adm.pkl",
        url=EDM_PRETRAINED + "edm-imagenet-64x64-cond-adm.pkl", size=1_180_000_000, licence=licence,
        description="EDM ADM (DhariwalUNet), ImageNet 64x64, class-conditional (≈296 M parameters; size approximate)",
        datasets=("imagenet64", "imagenet"), metrics=("score_cosine", "lpips_alignment"), providers=("edm",)))
