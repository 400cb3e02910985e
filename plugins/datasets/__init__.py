"""Built-in plugin: real datasets — CIFAR-10, MNIST and scikit-learn digits with a letter
distractor, ImageNet 64×64 and ImageNet (ILSVRC2012 val, 224×224).

Each loader reads the dataset's published on-disk format from ``--data-root DIR`` (default
``<cache dir>/data/<name>``), downloads where the licence and network allow, and otherwise
fails with one line naming the files expected and where. Heavy imports happen in the factories.
"""

from pagbench.plugin import DatasetEntry, hookimpl

#: The distractor sets' construction (plugins/datasets/distractor.py); models trained on an
#: earlier construction are stored under a different identifier and never reused.
DISTRACTOR_VERSION = "3"


def _cifar10(data_root):
    from .cifar import build_dataset

    return build_dataset(data_root)


def _distractor_factory(source: str, distractor: str):
    def factory(data_root):
        from .distractor import build_digits_dataset, build_mnist_dataset

        build = build_digits_dataset if source == "digits" else build_mnist_dataset
        return build(data_root, distractor=distractor)

    return factory


#: (source, base name, what fills the signal half, source URL, licence) of the distractor sets
_DISTRACTOR_SOURCES = (
    ("digits", "digits-distractor", "scikit-learn digits (upsampled)",
     "sklearn.datasets.load_digits (UCI optical digits)", "CC BY 4.0"),
    ("mnist", "mnist-distractor", "MNIST digit", "http://yann.lecun.com/exdb/mnist/", "CC BY-SA 3.0"),
)


def _imagenet64(data_root):
    from .imagenet import build_imagenet64

    return build_imagenet64(data_root)


def _imagenet(data_root):
    from .imagenet import build_imagenet

    return build_imagenet(data_root)


@hookimpl
def register_datasets(register):
    register(DatasetEntry(
        name="cifar10", factory=_cifar10, num_classes=10, image_shape=(3, 32, 32),
        description="CIFAR-10 (python pickle batches; downloaded when the network allows)",
        source="https://www.cs.toronto.edu/~kriz/cifar.html", licence="unspecified (research use)",
        # the reference code's choice: the unconditional EDM network (asset edm-cifar10-32x32-uncond-vp) paired with
        # the gradient of the logit sum, and tangent spaces from that network's denoiser Jacobian (no fitting)
        default_score_provider="edm", default_manifold_provider="score-jacobian", default_gradient="logit-sum",
    ))
    for source, base, digits, url, licence in _DISTRACTOR_SOURCES:
        offline = "; offline" if source == "digits" else ""
        for distractor, name, description in (
            ("fixed", base, f"{digits} in one half, a fixed letter A in the other (the paper's construction){offline}"),
            ("varied", f"{base}-varied", f"{base} with a random letter, size, place and ink per image (ablation){offline}"),
        ):
            register(DatasetEntry(
                name=name, factory=_distractor_factory(source, distractor), num_classes=10, image_shape=(1, 56, 28),
                description=description, source=url, licence=licence,
                default_score_provider="denoiser", default_manifold_provider="autoencoder",
                version=DISTRACTOR_VERSION,
            ))
    register(DatasetEntry(
        name="imagenet64", factory=_imagenet64, num_classes=1000, image_shape=(3, 64, 64),
        description="Downsampled ImageNet 64x64 (npz batches; --data-root, or the manual asset imagenet64-val)",
        source="https://image-net.org/download-images.php", licence="ImageNet terms of access",
        default_score_provider="edm", default_manifold_provider="autoencoder", default_gradient="logit",
    ))
    register(DatasetEntry(
        name="imagenet", factory=_imagenet, num_classes=1000, image_shape=(3, 224, 224),
        description="ILSVRC2012 validation set, 224x224 (ImageFolder layout; scores at 64x64)",
        source="https://image-net.org/challenges/LSVRC/2012/", licence="ImageNet terms of access",
        default_score_provider="edm", default_manifold_provider=None, default_gradient="logit",
    ))


#: Asset names the loaders resolve (pagbench assets fetch NAME)
CIFAR10_ASSET = "cifar10-python"
MNIST_ASSETS = {  # file -> (asset name, published MD5 = torchvision's MNIST.resources, size in bytes)
    "train-images-idx3-ubyte.gz": ("mnist-train-images", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9_912_422),
    "train-labels-idx1-ubyte.gz": ("mnist-train-labels", "d53e105ee54ea40749a09fcbcd1e9432", 28_881),
    "t10k-images-idx3-ubyte.gz": ("mnist-test-images", "9fb629c4189551a2d022fa330f9573f3", 1_648_877),
    "t10k-labels-idx1-ubyte.gz": ("mnist-test-labels", "ec29112dd5afa0611ce80d1b7f02629c", 4_542),
}
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's first MNIST mirror


@hookimpl
def register_assets(register):
    """The dataset files pagbench downloads (CIFAR-10, MNIST) or that must be copied by hand (ImageNet 64x64)."""
    from pagbench.plugin import AssetEntry

    register(AssetEntry(
        name=CIFAR10_ASSET, filename="cifar-10-python.tar.gz", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        size=170_498_071, size_exact=True, md5="c58f30108f718f92721af3b95e74349a", licence="unspecified (research use)",
        description="CIFAR-10, python pickle batches (extracted on first use)", datasets=("cifar10",)))
    users = ("mnist-distractor", "mnist-distractor-varied")
    for filename, (name, md5, size) in MNIST_ASSETS.items():
        register(AssetEntry(
            name=name, filename=filename, folder="mnist", url=MNIST_MIRROR + filename, size=size, md5=md5,
            licence="CC BY-SA 3.0", description=f"MNIST {filename} (IDX, gzipped)", datasets=users))
    register(AssetEntry(
        name="imagenet64-val", filename="val_data.npz", folder="imagenet64", url=None, size=None,
        licence="ImageNet terms of access", datasets=("imagenet64",),
        description="Downsampled ImageNet 64x64 validation batch (npz; Chrabaszcz et al., 2017)",
        manual="log in at https://image-net.org/download-images.php, download Imagenet64_val_npz.zip and unzip val_data.npz"))
