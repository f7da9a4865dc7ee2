"""The specs behind tests/golden/*.pbtxt (one place, used by the golden test and to regenerate)."""

from packager.spec import DynamicBatching, InstanceGroup, ModelSpec, TensorSpec

GOLDEN = {
    "gpu_batching": ModelSpec(
        name="mlp",
        platform="onnxruntime_onnx",
        max_batch_size=64,
        inputs=(TensorSpec("input", "FP32", (16,)),),
        outputs=(TensorSpec("output", "FP32", (4,)),),
        instance_groups=(InstanceGroup("KIND_GPU", 2, (0, 1)),),
        dynamic_batching=DynamicBatching((8, 16), 200),
    ),
    "cpu_no_batch": ModelSpec(
        name="scorer",
        platform="pytorch_libtorch",
        max_batch_size=0,
        inputs=(TensorSpec("INPUT__0", "FP32", (1, 16)),),
        outputs=(TensorSpec("OUTPUT__0", "FP32", (1, 4)),),
        instance_groups=(InstanceGroup("KIND_CPU", 1),),
    ),
    "dynamic_dim": ModelSpec(
        name="encoder",
        platform="onnxruntime_onnx",
        max_batch_size=8,
        inputs=(TensorSpec("ids", "INT64", (-1,)), TensorSpec("mask", "BOOL", (-1,))),
        outputs=(TensorSpec("hidden", "FP32", (-1, 32)),),
        instance_groups=(InstanceGroup("KIND_AUTO", 1),),
        dynamic_batching=DynamicBatching(max_queue_delay_us=100),
    ),
}
