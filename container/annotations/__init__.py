"""Detection datasets in any format: read, check, split, convert. The SDK's ``sdk.data`` and the images use it.

    from container.annotations import read, check, split, convert
    ann = read("labelimg-export/")                 # format detected
    print(check(ann).text())                       # missing/unreadable images, bad boxes, duplicates...
    convert("labelimg-export/", "yolo", "data/", ratios=(0.8, 0.2), seed=0)

Modules: ``types`` (Box, Item, Annotations), ``paths`` (image suffixes, split names, finding an image by
its relative path), ``yolo_tree`` (the YOLO layout), ``detect``, ``readers`` (YOLO, VOC, Ground Truth,
CSV), ``coco`` (streamed), ``tools`` (CVAT for images 1.1, LabelMe), ``check``, ``split``, ``convert``,
``writers`` (YOLO, COCO, sharded TFRecord, VOC, CSV, Ground Truth), ``labelmap``, ``tfrecord`` (the wire
format). This package imports no image adapter (``container/yolo``, ``container/tfod``): they import it.
"""

from container.annotations.check import Report, check
from container.annotations.convert import convert
from container.annotations.detect import FORMATS, detect
from container.annotations.labelmap import read_label_map, write_label_map
from container.annotations.paths import IMG_SUFFIXES, SPLIT_ALIASES
from container.annotations.readers import read
from container.annotations.split import split
from container.annotations.types import Annotations, Box, Item
from container.annotations.writers import WRITERS

__all__ = ["FORMATS", "IMG_SUFFIXES", "SPLIT_ALIASES", "WRITERS", "Annotations", "Box", "Item", "Report", "check",
           "convert", "detect", "read", "read_label_map", "split", "write_label_map"]
