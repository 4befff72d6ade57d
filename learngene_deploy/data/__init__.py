"""Image data for ``--data``: built-ins, ImageFolder directories, WebDataset shards, IDX and Hugging Face directories.

Sources, resolved in this order (:func:`load_data`):

* ``digits`` (scikit-learn, 1,797 8x8 images; a seeded ``val_fraction`` is held out) and ``fashion-mnist`` (the Debian
  package ``dataset-fashion-mnist``; validates on the official 10k test set). These, and any directory holding the
  four IDX files (``train-images-idx3-ubyte[.gz]`` ...), are small and stay in memory as uint8.
* WebDataset tar shards: a brace pattern (``/data/shard-{000..099}.tar``), a directory of ``*.tar``, or a directory
  whose ``train`` (and ``val``/``validation``/``test``) sub-directories hold them. A sample is the files sharing a
  key (webdataset's rule); its image is the first image member and its class the ``.cls`` member: an index into
  (or a name in) ``classes.txt``/``classes.json`` beside the shards, else an integer index (names "0".."max") or a
  class name (classes sorted). Plain uncompressed ``.tar`` only: samples are read by offset.
* A directory with ``dataset_dict.json`` or ``state.json`` + ``dataset_info.json``: a Hugging Face ``datasets``
  directory written by ``save_to_disk`` (optional extra ``hf``; memory-mapped with ``load_from_disk``, never
  downloads). The image column is the one ``Image`` feature and the label column the one ``ClassLabel`` feature (else
  ``image``/``img`` and ``label``/``labels``/``fine_label``; or pass ``image_column``/``label_column``). A
  ``DatasetDict`` trains on ``train`` and validates on ``validation``, ``val``, ``valid`` or ``test`` (first present).
* An ImageFolder: one sub-folder per class (index = position among the sorted names) with images inside, nested
  folders allowed (jpg, jpeg, png, bmp, gif, webp, tif, tiff, any case; names starting with ``.`` and ``__MACOSX``
  are ignored; only regular files are read, and a directory symlink loop is entered once). If the only sub-folders
  are ``train`` and ``val``/``validation``/``test`` (each with the same class sub-folders), those are the splits.

Without an explicit validation split, a seeded, stratified ``val_fraction`` of every class (at least one image per
class of two or more) is held out. ``train_limit``/``val_limit`` choose seeded subsets before any image is decoded;
nothing else subsamples. Image sources are lazy (:mod:`.sources`): decoded and transformed one image at a time, in
DataLoader workers through :func:`make_loader`, so memory does not grow with the number of images.

Every split applies one preprocessing contract (:class:`Preprocessing`, recorded as ``info["preprocessing"]``):
image sources default to the seeds' recipe (bicubic, ImageNet mean/std, crop_pct 0.875); the grayscale built-ins and
IDX directories use bilinear resizing, mean = std = 0.5 and no crop, as the shipped learngenes were trained. Training
augmentation is a named :class:`Preset` (``deit``, ``light``, ``none``; :mod:`.presets`).

``info["fingerprint"]`` identifies the data used: for built-ins the sha256 of the uint8 arrays of both splits, for
image sources the sha256 over every item's split, name, size and label, plus the bytes of all items (or of 256 evenly
spaced ones in a larger source; see :func:`~learngene_deploy.data.splits.fingerprint`). It changes when a file's name,
size or class or the split changes (and its bytes, for sources of <= 256 items), not with ``img_size``, and not when
the directory is moved.
"""

from learngene_deploy.data.contract import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    Preprocessing,
    eval_transform,
    load_image,
)
from learngene_deploy.data.loader import Loader, make_loader, sample_seed
from learngene_deploy.data.presets import PRESETS, Preset, get_preset, mixup_fn, train_transform
from learngene_deploy.data.sources import IMAGE_EXTENSIONS, VAL_DIRS, BadImage, ImageDataset
from learngene_deploy.data.splits import (
    BUILTIN,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FINGERPRINT_FILES,
    IDX_FILES,
    DataSplits,
    load_data,
)

__all__ = [
    "BUILTIN",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FINGERPRINT_FILES",
    "IDX_FILES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PRESETS",
    "VAL_DIRS",
    "BadImage",
    "DataSplits",
    "EvalTransform",
    "ImageDataset",
    "Loader",
    "Preprocessing",
    "Preset",
    "eval_transform",
    "get_preset",
    "load_data",
    "load_image",
    "make_loader",
    "mixup_fn",
    "sample_seed",
    "train_transform",
]
