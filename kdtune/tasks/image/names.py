"""The built-in datasets' names and the default number of augmented views, apart from the code that needs torch.

The spec checks ``dataset.name`` against them when it is read, and read-only commands (``kdtune status``,
``recommend``, ``report``) read specs without paying for torch.
"""

from __future__ import annotations


#: kdtune's name -> torchvision's class and folder name (``<data_root>/<folder>/raw``).
IMAGE_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
#: Image datasets read from disk (:mod:`kdtune.tasks.image.folder`): a folder in ImageFolder layout, and any
#: ``torchvision:<Class>`` already on disk.
IMAGE_FOLDER = "image_folder"
TORCHVISION_PREFIX = "torchvision:"
DATASETS = ("digits", *IMAGE_DATASETS, IMAGE_FOLDER, "linear")

#: Augmented views per training image when ``student.augment`` is set (:mod:`kdtune.tasks.image.views`).
DEFAULT_VIEWS = 4
