# WORK IN PROGRESS (branch tfod, issue 6): a Model Garden RetinaNet run on our TFRecords, proven here:
# retinanet_mobile_coco, 128 px, label_map_decoder over label_map.csv, 6 steps + COCO eval in 33 s on CPU.
# Usage: .venv-tf/bin/python container/tfod/prototype_train.py RECORDS_DIR MODEL_DIR
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from official.core import exp_factory, train_lib, task_factory
from official.vision import registry_imports  # noqa: F401  registers the experiments
from official.modeling import hyperparams

exp = exp_factory.get_exp_config("retinanet_mobile_coco")
data = sys.argv[1]
override = {
  "runtime": {"distribution_strategy": "one_device", "mixed_precision_dtype": "float32", "num_gpus": 0},
  "task": {
    "init_checkpoint": None, "annotation_file": None,
    "model": {"num_classes": 3, "input_size": [128, 128, 3], "norm_activation": {"use_sync_bn": False}},
    "train_data": {"input_path": f"{data}/train.tfrecord", "global_batch_size": 4, "dtype": "float32",
                   "decoder": {"type": "label_map_decoder", "label_map_decoder": {"label_map": f"{data}/label_map.csv"}}},
    "validation_data": {"input_path": f"{data}/val.tfrecord", "global_batch_size": 4, "dtype": "float32",
                   "decoder": {"type": "label_map_decoder", "label_map_decoder": {"label_map": f"{data}/label_map.csv"}}},
  },
  "trainer": {"train_steps": 6, "validation_steps": 1, "validation_interval": 6, "steps_per_loop": 3,
              "summary_interval": 3, "checkpoint_interval": 3,
              "optimizer_config": {"learning_rate": {"type": "constant", "constant": {"learning_rate": 0.01}},
                                   "warmup": {"type": "linear", "linear": {"warmup_steps": 1, "warmup_learning_rate": 0.001}}}},
}
exp.override(override, is_strict=False)
print(exp.task.model.num_classes)
strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
with strategy.scope():
    task = task_factory.get_task(exp.task, logging_dir=sys.argv[2])
t = time.time()
model, logs = train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train_and_eval",
                                       params=exp, model_dir=sys.argv[2])
print("done", time.time() - t, {k: float(v) if hasattr(v, "__float__") else v for k, v in (logs or {}).items()})
