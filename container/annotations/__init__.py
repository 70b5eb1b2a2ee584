"""Detection datasets in any format: read, check, split, convert. The SDK's ``sdk.data`` and the images use it.

    from container.annotations import read, check, split, convert
    ann = read("labelimg-export/")                 # format detected: yolo, voc, coco, groundtruth, csv
    print(check(ann).text())                       # missing/unreadable images, bad boxes, duplicates...
    convert("labelimg-export/", "yolo", "data/", ratios=(0.8, 0.2), seed=0)

Readers: YOLO trees, Pascal VOC XML, COCO JSON, Ground Truth output manifests, CSV
``filename,width,height,class,xmin,ymin,xmax,ymax``. Writers: YOLO tree, COCO JSON, TFRecord
(TF Object Detection keys) with label maps.
"""

from container.annotations.checks import Report, check, convert, split
from container.annotations.model import Annotations, Box, Item
from container.annotations.readers import FORMATS, detect, read
from container.annotations.writers import WRITERS, write_label_map

__all__ = ["FORMATS", "WRITERS", "Annotations", "Box", "Item", "Report", "check", "convert", "detect", "read",
           "split", "write_label_map"]
