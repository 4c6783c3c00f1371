"""Data sets: loading from folders and tables, validation, splits.

Example:
    >>> from headstart.data import load_dataset, stratified_split
    >>> splits = load_dataset("examples/fashion-mnist-mini")
    >>> len(splits.train), splits.class_names[:2]
    (1000, ['ankle_boot', 'bag'])
"""

from headstart.data.base import Dataset
from headstart.data.images import from_arrays
from headstart.data.inputs import load_inputs
from headstart.data.load import as_splits, load_dataset
from headstart.data.modality import MODALITIES, Modality, ModalitySpec, modality_spec
from headstart.data.splits import DataSplits, fraction_subset, sample_per_class, stratified_split
from headstart.data.text import from_texts

__all__ = [
    "MODALITIES",
    "DataSplits",
    "Dataset",
    "Modality",
    "as_splits",
    "ModalitySpec",
    "fraction_subset",
    "from_arrays",
    "from_texts",
    "load_dataset",
    "load_inputs",
    "modality_spec",
    "sample_per_class",
    "stratified_split",
]
