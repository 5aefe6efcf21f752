"""Office-Home (Venkateswara et al., CVPR 2017, "Deep Hashing Network for Unsupervised Domain
Adaptation") in LibMTL's multi-task setting (arXiv 2203.14338, ``examples/office``): four
tasks, one per domain (``art``, ``clipart``, ``product``, ``real_world``; 15,588 images in
all), each a 65-way classification of its own images.

Read from the official archive (``OfficeHomeDataset_10072016.zip``) extracted under
``--data-root``, either as ``OfficeHomeDataset_10072016/`` or directly::

    {Art,Clipart,Product,Real World}/<Class>/NNNNN.jpg

(``Real_World``, the name LibMTL's lists use, is accepted too). Classes are the 65 class
folders, sorted by name. Split: within every domain and class, 60% / 20% / 20% drawn with
``data_seed``, or LibMTL's own lists with ``split_lists=<folder holding Art_train.txt ...>``
(``examples/office/data_txt/office-home``; their ``Real_World/`` paths are read from the
official ``Real World`` folder). Batches, model,
parameters and training defaults: as :mod:`mtlkit_plugins.benchmarks.office_31`.
"""

from __future__ import annotations

from typing import ClassVar

from mtlkit_plugins.benchmarks._office import Layout, OfficeBenchmark

from mtlkit import hookimpl

SOURCE = "https://www.hemanthdv.org/officeHomeDataset.html (OfficeHomeDataset_10072016.zip)"


class OfficeHome(OfficeBenchmark):
    """Office-Home: tasks ``art``, ``clipart``, ``product``, ``real_world``, 65 classes each."""

    name: ClassVar[str] = "office_home"
    layout: ClassVar[Layout] = Layout(
        folders=("OfficeHomeDataset_10072016", "OfficeHome", "office_home", "office-home"),
        domains=(("art", ("Art",)), ("clipart", ("Clipart",)), ("product", ("Product",)),
                 ("real_world", ("Real World", "Real_World"))),
        libmtl=("Art", "Clipart", "Product", "Real_World"), images="", num_classes=65,
        source=SOURCE)


@hookimpl
def register_benchmarks(register):
    register("office_home", OfficeHome)
