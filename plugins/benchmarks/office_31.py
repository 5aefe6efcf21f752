"""Office-31 (Saenko et al., ECCV 2010, "Adapting Visual Category Models to New Domains") in
LibMTL's multi-task setting (Lin & Zhang, "LibMTL: A Python Library for Multi-Task Learning",
JMLR 2023, arXiv 2203.14338; ``examples/office``): three tasks, one per domain (``amazon``,
``dslr``, ``webcam``; 2817 / 498 / 795 images), each a 31-way classification of its own images.

Read from the official archive (``domain_adaptation_images.tar.gz``, 4110 images) extracted
under ``--data-root``, either as ``Office31/`` or directly::

    {amazon,dslr,webcam}/images/<class>/frame_NNNN.jpg

Classes are the 31 class folders, sorted by name (identical in every domain). Split: within
every domain and class, 60% train / 20% val / 20% test, drawn with ``data_seed`` (LibMTL's
proportions; its own random lists are used instead with ``split_lists=<folder holding
amazon_train.txt ...>`` from LibMTL's ``examples/office/data_txt/office-31``). How a batch holds
one sub-batch per domain, the padding of evaluation splits and the model that routes each
domain to its task: :mod:`mtlkit_plugins.benchmarks._office`.

Model: the registered ``backbone`` (``small_cnn`` by default for CPUs; LibMTL's protocol is
``resnet18`` with ImageNet weights, ``weights=<local .pth>``, at ``image_size`` 224) followed
by LibMTL's hidden layer (``hidden=512``: Linear - BatchNorm1d - ReLU - Dropout 0.5; ``None``
drops it) and one linear head per domain; ``architecture`` rebuilds it as one of the
soft-sharing architectures (docs/architectures.md). Training defaults: LibMTL's (Adam, lr 1e-4,
weight decay 1e-5, 64 images per domain per step, 100 epochs). No single-task baselines are
shipped: ``mtlkit train --stl`` measures them.
"""

from __future__ import annotations

from typing import ClassVar

from mtlkit_plugins.benchmarks._office import Layout, OfficeBenchmark

from mtlkit import hookimpl

SOURCE = "https://www.cc.gatech.edu/~judy/domainadapt/ (domain_adaptation_images.tar.gz)"


class Office31(OfficeBenchmark):
    """Office-31: tasks ``amazon``, ``dslr``, ``webcam``, 31 classes each."""

    name: ClassVar[str] = "office_31"
    layout: ClassVar[Layout] = Layout(
        folders=("Office31", "office31", "office-31", "OFFICE31"),
        domains=(("amazon", ("amazon",)), ("dslr", ("dslr",)), ("webcam", ("webcam",))),
        libmtl=("amazon", "dslr", "webcam"), images="images", num_classes=31, source=SOURCE)


@hookimpl
def register_benchmarks(register):
    register("office_31", Office31)
