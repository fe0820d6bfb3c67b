"""The Fashion-MNIST demo through OML 4.0 (PyTorch + Lightning), for the side-by-side in docs/training.md.

usage: python oml_fashion_mnist.py DATASET_ROOT [MAX_EPOCHS] [VALID_PERIOD] [SEED]
  DATASET_ROOT: the folder `oml train examples/configs/fashion_mnist.yaml` converts the data to
  (runs/data/fashion-mnist: df.csv + images/). Run with the venv of ../bench/python/oml/setup_oml_reference.sh.

Same architecture (crates/models/src/small_cnn.rs), sampler, miner, loss, optimizer and metrics as
examples/configs/fashion_mnist.yaml, run by OML's own extractor_training_pipeline. Prints one JSON line:
the final metrics, the mean wall time of a training epoch and of the whole fit.
"""
import json, os, sys, tempfile, time

import torch
from torch import nn
import torch.nn.functional as F
import pytorch_lightning as pl

import oml.lightning.pipelines.train as T
from oml.interfaces.models import IExtractor
from oml.lightning.pipelines.train import extractor_training_pipeline
from oml.registry.models import EXTRACTORS_REGISTRY


class SmallCnn(IExtractor):
    """conv3x3/2-BN-ReLU, conv3x3-BN-ReLU-maxpool, conv3x3-BN-ReLU-GAP, linear, L2 norm (as oml-rs' SmallCnn)."""

    def __init__(self, feat_dim=64, channels=(32, 64, 128), normalise_features=True, batch_norm=True):
        super().__init__()
        c = [3, *channels]
        self.convs = nn.ModuleList(nn.Conv2d(c[i], c[i + 1], 3, stride=2 if i == 0 else 1, padding=1) for i in range(3))
        self.norms = nn.ModuleList(nn.BatchNorm2d(c[i + 1]) if batch_norm else nn.Identity() for i in range(3))
        self.head = nn.Linear(channels[2], feat_dim)
        self.normalise = normalise_features

    def forward(self, x):
        for i in range(3):
            x = F.relu(self.norms[i](self.convs[i](x)))
            if i == 1:
                x = F.max_pool2d(x, 2)
        x = x.mean(dim=(2, 3))
        x = self.head(x)
        return F.normalize(x, dim=1) if self.normalise else x

    @property
    def feat_dim(self):
        return self.head.out_features


class Watch(pl.Callback):
    def __init__(self):
        self.epoch_times, self.starts, self.metrics, self.t = [], [], {}, None

    def on_train_epoch_start(self, trainer, module):
        self.t = time.perf_counter()
        self.starts.append(self.t)

    def on_train_epoch_end(self, trainer, module):
        self.epoch_times.append(time.perf_counter() - self.t)

    def on_validation_end(self, trainer, module):
        self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("OVERALL")}
        print(json.dumps({"epoch": trainer.current_epoch + 1, **self.metrics}), flush=True)


def main():
    root = os.path.abspath(sys.argv[1])
    max_epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    valid_period = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 42
    EXTRACTORS_REGISTRY["small_cnn"] = SmallCnn
    watch = Watch()
    trainer_cls = pl.Trainer

    class PL:  # the pipeline builds its Trainer itself: add the timing callback
        @staticmethod
        def Trainer(*args, **kwargs):
            kwargs["callbacks"] = [*kwargs["callbacks"], watch]
            kwargs["enable_progress_bar"] = False
            return trainer_cls(*args, **kwargs)

    T.pl = PL
    cfg = {
        "seed": seed, "accelerator": "cpu", "devices": 1, "precision": 32,
        "dataset_root": root, "dataframe_name": "df.csv", "cache_size": 10000, "num_workers": 1,
        "transforms_train": {"name": "norm_albu", "args": {}}, "transforms_val": {"name": "norm_albu", "args": {}},
        "sampler": {"name": "balance", "args": {"n_labels": 5, "n_instances": 32}},
        "bs_val": 500, "max_epochs": max_epochs, "valid_period": valid_period,
        "extractor": {"name": "small_cnn", "args": {"feat_dim": 64, "channels": [32, 64, 128]}},
        "criterion": {"name": "triplet_with_miner", "args": {
            "margin": 0.2, "reduction": "mean", "need_logs": True, "miner": {"name": "hard_triplets", "args": {}}}},
        "optimizer": {"name": "adam", "args": {"lr": 0.001}},
        "scheduling": None, "freeze_n_epochs": 0,
        "metric_args": {"cmc_top_k": [1, 5], "map_top_k": [5], "precision_top_k": [5], "pcf_variance": [0.5],
                        "return_only_overall_category": True},
        "metric_for_checkpointing": "OVERALL/map/5", "mode_for_checkpointing": "max", "log_images": False,
        "logger": None, "tags": [], "postfix": "",
    }
    os.chdir(tempfile.mkdtemp(prefix="oml-fmnist-"))
    t0 = time.perf_counter()
    extractor_training_pipeline(cfg)
    fit = time.perf_counter() - t0
    times = watch.epoch_times
    # start of epoch N to start of N+1, as measured for oml-rs from Burn's log
    full = sorted(b - a for a, b in zip(watch.starts, watch.starts[1:]))
    print(json.dumps({"OML": {"metrics": watch.metrics, "epoch_s_mean": sum(full) / len(full),
                      "epoch_s_median": full[len(full) // 2], "train_split_s_mean": sum(times) / len(times),
                      "fit_s": fit, "epochs": len(times), "threads": torch.get_num_threads()}}))


if __name__ == "__main__":
    main()
