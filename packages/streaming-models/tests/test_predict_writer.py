"""``predict`` outputs written batch by batch (``ShardCSVWriter``): same files as collecting them all, nothing kept."""

import numpy as np
import pandas as pd
import pytest
import torch

from cellflux_streaming_models._fit import stream_fit
from cellflux_streaming_models.data import ShardCollection, ShardDataset
from cellflux_streaming_models.lightning import StreamDataModule, StreamingModule
from cellflux_streaming_models.lightning._writer import ShardCSVWriter
from cellflux_streaming_models.models import IncrementalPCA
from cellflux_streaming_models.transforms import Log1p, NormalizeTotal

pytestmark = [
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
]


def _trainer(trainer_options, callbacks=()):
    import lightning.pytorch as pl

    return pl.Trainer(**trainer_options(logger=False, enable_checkpointing=False, callbacks=list(callbacks)))


def _collected_then_written(outputs, paths, out_dir):
    """The former ``cellflux stream predict``: every batch's output kept, then one CSV per shard."""
    values = torch.cat([o["x_ng"] for o in outputs]).numpy()
    shard = torch.cat([o["shard_index_n"] for o in outputs]).numpy()
    names = np.concatenate([o["obs_names_n"] for o in outputs])
    columns = [str(c) for c in outputs[0]["var_names_g"]]
    out_dir.mkdir()
    for s, path in enumerate(paths):
        rows = shard == s
        frame = pd.DataFrame(values[rows], index=pd.Index(names[rows], name="obs_names"), columns=columns)
        frame.to_csv(out_dir / f"{path.stem}.csv")


def test_writer_writes_each_batch_and_matches_collecting_everything(shard_paths, tmp_path, trainer_options):
    collection = ShardCollection(shard_paths)
    transforms = [NormalizeTotal(1e4), Log1p()]
    model = IncrementalPCA(collection.var_names, n_components=4)
    stream_fit(model, lambda e: ShardDataset(collection, batch_size=500), transforms=transforms)
    module = StreamingModule(model, transforms)
    data = StreamDataModule([str(p) for p in shard_paths], batch_size=128)  # batches straddle the shards

    expected = tmp_path / "collected"
    _collected_then_written(_trainer(trainer_options).predict(module, datamodule=data), data.collection.paths, expected)

    writer = ShardCSVWriter(tmp_path / "streamed")
    assert _trainer(trainer_options, [writer]).predict(module, datamodule=data, return_predictions=False) is None
    n_batches = -(-1030 // 128)
    assert writer.batches_written == n_batches and writer.rows_written == 1030
    # the writer holds no outputs: only file names and counters
    assert not [k for k, v in vars(writer).items() if isinstance(v, torch.Tensor | np.ndarray | pd.DataFrame)]
    written = sorted((tmp_path / "streamed").iterdir())
    assert [f.name for f in written] == [f"{p.stem}.csv" for p in shard_paths]  # no .partial left
    for f in written:
        assert f.read_bytes() == (expected / f.name).read_bytes()
    frame = pd.read_csv(written[-1], index_col=0)
    assert list(frame.columns) == ["PC1", "PC2", "PC3", "PC4"] and len(frame) == 130


def test_writer_needs_shard_names(tmp_path):
    writer = ShardCSVWriter(tmp_path)

    class _NoData:
        datamodule = None

    with pytest.raises(ValueError, match="shard_paths"):
        writer.on_predict_start(_NoData(), None)
