"""Score providers backed by public diffusion models: EDM / EDM2 network pickles and diffusers
ε-prediction UNets. Both convert from the models' [−1,1] range: x₋₁ = 2x − 1, σ₋₁ = 2σ,
score₀₁ = 2·score₋₁, with x and σ in [0,1] pixel units."""

from __future__ import annotations

import hashlib
import os

import torch

from pagbench.plugin import paths
from pagbench.plugin import PagbenchError
from pagbench.plugin import canonical_json
from pagbench.plugin import NetworkScoreProvider, score_image_shape

_TRUE = ("1", "true", "yes", "on")


def _trusted(options) -> bool:
    return str(options.get("trust_pickle", "")).lower() in _TRUE


def _asset_label(asset) -> str:
    """How a result names a file that came from an asset (and a test-only table, when it did)."""
    from pagbench.plugin import assets

    label = f"asset {asset.name} ({asset.url or 'manual'})"
    if assets.overridden(asset):
        label += f" [TEST-ONLY asset table {assets.override_table_path()}]"
    return label


def _asset_location(dataset, options):
    """(asset entry, local path) of the network: ``asset=NAME``, else the one asset declared for
    the ``edm`` provider on ``dataset`` (fetched when missing and online). Missing offline, or
    none declared: :class:`~pagbench.errors.MetricUnavailable` naming the way out."""
    from pagbench.plugin import assets
    from pagbench.plugin import MetricUnavailable

    name = options.get("asset")
    entry = assets.get(str(name)) if name else assets.for_provider("edm", dataset.name)
    if entry is None:
        raise MetricUnavailable(f"the edm score provider has no default network for {dataset.name!r}: "
                                f"--provider-option path=FILE_OR_URL (or asset=NAME, see `pagbench assets list`)")
    return entry, str(assets.resolve(entry, who="the edm score provider"))


class EdmScores(NetworkScoreProvider):
    """score₀₁ = 2·(D(x₋₁; σ₋₁, y) − x₋₁)/σ₋₁² from an EDM/EDM2 network pickle.

    Options: ``path`` (file or URL; default: the asset a plugin declares for ``edm`` on the
    dataset, e.g. ``edm-cifar10-32x32-uncond-vp`` for ``cifar10``, fetched when missing and online),
    ``asset`` (an asset name instead), ``trust_pickle=1`` (needed only for classes pagbench does not implement: it runs the file's code; the published SongUNet / DhariwalUNet networks are rebuilt as pagbench's own modules without running anything, and ``files`` says which way a file was loaded, ``loaded_with``, with its ``module_src_sha256``), ``uncond_path`` (an unconditional pickle, for the unconditional score when ``path``
    is class-conditional), ``sha256`` / ``uncond_sha256`` (pin the files: their SHA-256, or a prefix
    of at least 8 hex digits; a file that differs is refused), ``device``. Every file read is listed
    with its SHA-256 in ``files`` (the result's ``config.provider_files``). Default σ = 0.05 pixel units (σ₋₁ = 0.1).
    """

    name = "edm"
    default_sigma = 0.05

    def __init__(self, dataset, options):

        from .edm import load_network_pickle, network_of, source_record

        location = options.get("path") or options.get("url")
        trust = _trusted(options)
        asset = None
        if not location:  # the asset named, else the one a plugin declares for edm on this dataset
            asset, location = _asset_location(dataset, options)
        self.configure(options)
        def pinned(option):  # a pin is passed only when given
            return {"sha256": options[option], "option": option} if options.get(option) else {}

        # a default network that will not load (damaged, or not the published architecture) is an
        # error naming the file, never a silent n/a: the published ones load without trust
        contents, digest = load_network_pickle(location, trust, **pinned("sha256"))
        self.files = [record for record in [source_record(location)] if record]
        if asset is not None and self.files:
            self.files[0] = {**self.files[0], "location": _asset_label(asset)}
        self.network = network_of(contents, location).to(self.device)
        self.image_shape = (int(self.network.img_channels), int(self.network.img_resolution), int(self.network.img_resolution))
        self.check_dataset(dataset)
        self.label_dim = int(getattr(self.network, "label_dim", 0) or 0)
        self.unconditional_network = self.network if self.label_dim == 0 else None
        digests = [digest]
        if options.get("uncond_path"):
            contents, second = load_network_pickle(options["uncond_path"], trust, **pinned("uncond_sha256"))
            self.files += [record for record in [source_record(options["uncond_path"])] if record]
            self.unconditional_network = network_of(contents, options["uncond_path"]).to(self.device)
            if int(getattr(self.unconditional_network, "label_dim", 0) or 0) != 0:
                raise PagbenchError(f"uncond_path {options['uncond_path']} is a class-conditional network")
            digests.append(second)
        self.has_conditional = self.label_dim == dataset.num_classes
        self.has_unconditional = self.unconditional_network is not None
        self.unavailable_hint = (
            "this network is unconditional" if self.label_dim == 0 else
            f"the network has {self.label_dim} classes, the dataset {dataset.num_classes}" if not self.has_conditional else
            "pass an unconditional pickle as --provider-option uncond_path=... or use --score conditional"
        )
        self._fingerprint = "edm:" + ":".join(digests)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def network_score(self, images, labels, sigma):
        network = self.network if labels is not None else self.unconditional_network
        x = 2 * images - 1
        sigma_m1 = torch.full((x.shape[0],), 2 * sigma, dtype=torch.float32, device=x.device)
        class_labels = None
        if labels is not None:
            class_labels = torch.nn.functional.one_hot(labels, self.label_dim).float()
        denoised = network(x, sigma_m1, class_labels).double()
        score_m1 = (denoised - x.double()) / (2 * sigma) ** 2
        return 2 * score_m1


def closest_step(alphas_cumprod, sigma: float) -> tuple[int, float]:
    """The timestep whose σ_t = √((1−ᾱ_t)/ᾱ_t) is closest to σ₋₁ = 2σ, and that σ_t ([−1,1] units)."""
    alphas = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    sigmas = ((1 - alphas) / alphas).sqrt()
    step = int(torch.argmin((sigmas - 2 * sigma).abs()))
    return step, float(sigmas[step])


def epsilon_score(predict_epsilon, alphas_cumprod, images, labels, sigma):
    """score₀₁ from an ε-prediction VP model: pick t with σ_t = √((1−ᾱ_t)/ᾱ_t) closest to σ₋₁ = 2σ,
    feed √ᾱ_t·x₋₁, and return 2·(−ε̂/σ_t). (For x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, x_t/√ᾱ_t is x₀ plus
    Gaussian noise of std σ_t, and ∇ log p = −ε̂/σ_t there.) Also returns the timestep used."""
    step, sigma_t = closest_step(alphas_cumprod, sigma)
    x = 2 * images - 1
    scale = float(torch.as_tensor(alphas_cumprod, dtype=torch.float64)[step].sqrt())
    epsilon = predict_epsilon(scale * x, step, labels).double()
    return 2 * (-epsilon / sigma_t), step


def _digest(unet, scheduler) -> str:
    """Content hash of a loaded UNet (config and weights) and its noise schedule, so that cached
    scores follow the model rather than the path or hub id it was loaded from."""
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}  # not _name_or_path
    digest = hashlib.sha256(canonical_json(config).encode())
    digest.update(scheduler.alphas_cumprod.double().numpy().tobytes())
    for name, tensor in unet.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class DiffusersScores(NetworkScoreProvider):
    """score = −ε̂/σ_t of a diffusers ε-prediction UNet at the timestep whose σ_t is closest to
    σ₋₁ (see :func:`epsilon_score`). Options: ``path`` (a local pipeline or model directory, or
    a hub id when online), ``subfolder`` (default ``unet`` when present; for a hub id in the
    pipeline layout pass ``subfolder=unet``, the scheduler is then read from ``scheduler/``),
    ``device``. The fingerprint hashes the weights and schedule, so cached scores follow the
    model. Needs the optional extra: ``pip install 'pagbench[diffusers]'``."""

    name = "diffusers"
    default_sigma = 0.05

    def __init__(self, dataset, options):
        from pagbench.plugin import MetricUnavailable

        try:
            import diffusers
        except ImportError:
            raise PagbenchError("the diffusers score provider needs the optional dependency: pip install 'pagbench[diffusers]'") from None
        location = options.get("path")
        if not location:
            raise MetricUnavailable("the diffusers score provider needs --provider-option path=DIR_OR_HUB_ID")
        location = os.path.expanduser(location)
        if not os.path.isdir(location) and (os.path.exists(location) or os.path.isabs(location) or location.startswith(".")):
            problem = "is not a directory" if os.path.exists(location) else "not found"
            raise PagbenchError(f"diffusers model directory {location} {problem} (path= takes a pipeline or model directory, or a hub id)")
        offline = paths.offline()
        if os.path.isdir(location):
            unet_folder = options.get("subfolder", "unet" if os.path.isdir(os.path.join(location, "unet")) else None)
            scheduler_folder = "scheduler" if os.path.isdir(os.path.join(location, "scheduler")) else None
        else:  # a hub id: model files at the top, or the pipeline layout (unet/, scheduler/) with subfolder=unet
            unet_folder = options.get("subfolder")
            scheduler_folder = "scheduler" if unet_folder == "unet" else None
        try:
            # float32 whatever the stored dtype; low_cpu_mem_usage only where accelerate is there (else diffusers warns)
            self.unet = diffusers.UNet2DModel.from_pretrained(location, subfolder=unet_folder, local_files_only=offline,
                                                              torch_dtype=torch.float32,
                                                              low_cpu_mem_usage=diffusers.utils.is_accelerate_available())
            scheduler = diffusers.DDPMScheduler.from_pretrained(location, subfolder=scheduler_folder, local_files_only=offline)
        except Exception as error:
            raise PagbenchError(f"cannot load a diffusers UNet2DModel and DDPMScheduler from {location}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
        prediction = getattr(scheduler.config, "prediction_type", "epsilon")
        if prediction != "epsilon":
            raise PagbenchError(f"{location}: prediction_type {prediction!r}; the diffusers provider needs an ε-prediction model")
        self.configure(options)
        self.unet = self.unet.to(self.device).eval().requires_grad_(False)
        self.alphas_cumprod = scheduler.alphas_cumprod
        config = self.unet.config
        size = config.sample_size
        if size is None:  # no fixed size recorded: the UNet is convolutional, take the dataset's
            size = score_image_shape(dataset)[1:]
        height, width = (size, size) if isinstance(size, int) else size
        self.image_shape = (int(config.in_channels), int(height), int(width))
        self.check_dataset(dataset)
        classes = getattr(config, "num_class_embeds", None)
        self.has_conditional = classes == dataset.num_classes
        self.has_unconditional = not classes
        self.unavailable_hint = (
            "this UNet is unconditional" if not classes else
            f"the UNet has {classes} classes, the dataset {dataset.num_classes}" if not self.has_conditional else
            "this UNet is class-conditional"
        )
        self._fingerprint = "diffusers:" + _digest(self.unet, scheduler)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def effective_sigma(self, sigma: float) -> float:
        """σ_t/2 of the timestep used (pixel units), not the requested σ."""
        return closest_step(self.alphas_cumprod, sigma)[1] / 2

    def network_score(self, images, labels, sigma):
        def predict(x, step, class_labels):
            timestep = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            return self.unet(x, timestep, class_labels=class_labels).sample

        score, _ = epsilon_score(predict, self.alphas_cumprod, images, labels, sigma)
        return score
