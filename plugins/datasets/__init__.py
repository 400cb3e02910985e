"""Built-in plugin: real datasets — CIFAR-10, MNIST and scikit-learn digits with a letter
distractor, ImageNet 64×64 and ImageNet (ILSVRC2012 val, 224×224).

Each loader reads the dataset's published on-disk format from ``--data-root DIR`` (default
``<cache dir>/data/<name>``), downloads where the licence and network allow, and otherwise
fails with one line naming the files expected and where. Heavy imports happen in the factories.
"""

from pagbench import DatasetEntry, hookimpl

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
        default_score_provider="edm", default_manifold_provider="autoencoder",
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
        description="Downsampled ImageNet 64x64 (npz batches; needs --data-root)",
        source="https://image-net.org/download-images.php", licence="ImageNet terms of access",
        default_score_provider="edm", default_manifold_provider="autoencoder",
    ))
    register(DatasetEntry(
        name="imagenet", factory=_imagenet, num_classes=1000, image_shape=(3, 224, 224),
        description="ILSVRC2012 validation set, 224x224 (ImageFolder layout; scores at 64x64)",
        source="https://image-net.org/challenges/LSVRC/2012/", licence="ImageNet terms of access",
        default_score_provider="edm", default_manifold_provider=None,
    ))
