from __future__ import annotations

import os
import sys

import onnxruntime
import pytest
import torch

from mobilenas.latency import (
    CommandBackend,
    Measurement,
    OnnxRuntimeBackend,
    Spread,
    TorchBackend,
    make_backend,
    measure,
    measure_interleaved,
    parse_command_output,
)
from mobilenas.latency.device import DeviceInfo, cpu_model
from mobilenas.space.builder import ConvBNAct

from helpers import tiny_arch


def test_a_tiny_network_is_timed_for_real_through_onnx_runtime() -> None:
    backend = OnnxRuntimeBackend(threads=1, warmup=1, repeats=7)
    result = measure(tiny_arch(), backend, input_size=32)
    assert isinstance(result, Measurement)
    assert result.runs == 7
    assert 0 < result.spread.min_ms <= result.latency_ms <= result.spread.max_ms
    assert result.spread.p25_ms <= result.latency_ms <= result.spread.p75_ms
    device = result.device
    assert device.runtime == "onnxruntime" and device.runtime_version == onnxruntime.__version__
    assert device.execution_provider == "CPUExecutionProvider"
    assert device.threads == 1 and device.batch_size == 1
    assert device.input_shape == (1, 3, 32, 32)
    assert device.cpu_count == os.cpu_count() and device.cpu_model == cpu_model() and device.date
    assert device.timer == "thread"  # one thread: the calling thread's CPU time


def test_more_threads_use_the_wall_clock() -> None:
    assert OnnxRuntimeBackend(threads=2).device().timer == "wall"
    assert OnnxRuntimeBackend(threads=1, timer="wall").device().timer == "wall"


def test_torch_backend_times_eager_pytorch_and_restores_threads() -> None:
    before = torch.get_num_threads()
    result = measure(tiny_arch(), TorchBackend(threads=1, warmup=1, repeats=3), input_size=32)
    assert result.latency_ms > 0 and result.runs == 3
    assert result.device.runtime == "torch" and result.device.runtime_version == torch.__version__
    assert torch.get_num_threads() == before


def test_the_bigger_model_is_slower_when_interleaved() -> None:
    def model(channels: int, size: int):
        return lambda: (ConvBNAct(channels, channels, 3, 1, 1, "relu"), (1, channels, size, size))

    small, big = measure_interleaved([model(8, 16), model(64, 64)], OnnxRuntimeBackend(warmup=1, repeats=6), rounds=3, seed=0)
    assert small.runs == big.runs == 6
    # 64x64x64 channels does about 500x the work of 8x16x16; noise cannot swap them.
    assert big.latency_ms > 5 * small.latency_ms
    assert big.device.input_shape == (1, 64, 64, 64)


def test_each_finished_group_is_handed_over_before_the_next_is_timed() -> None:
    # nas-results measure keeps a finished group's timings: an interrupt in the next loses only it
    def model(channels: int):
        return lambda: (ConvBNAct(channels, channels, 3, 1, 1, "relu"), (1, channels, 8, 8))

    def interrupted():
        raise KeyboardInterrupt

    done: list[tuple[list[int], list[float]]] = []
    with pytest.raises(KeyboardInterrupt):
        measure_interleaved([model(4), model(8), interrupted], OnnxRuntimeBackend(warmup=1, repeats=2), rounds=2, group_size=2, on_done=lambda indices, ms: done.append((indices, [m.latency_ms for m in ms])))
    assert [indices for indices, _ in done] == [[0, 1]] and all(latency > 0 for latency in done[0][1])


def test_cold_cache_runs_are_timed_too() -> None:
    backend = OnnxRuntimeBackend(warmup=1, repeats=3)
    result = backend.measure_module(ConvBNAct(8, 8, 3, 1, 8, None), (1, 8, 16, 16), cold_cache=True)
    assert result.runs == 3 and result.latency_ms > 0


def test_spread_by_hand() -> None:
    spread = Spread.of([1.0, 2.0, 3.0, 4.0])
    assert spread.p25_ms == pytest.approx(1.75) and spread.p75_ms == pytest.approx(3.25)
    assert spread.iqr_ms == pytest.approx(1.5)
    assert spread.std_ms == pytest.approx(1.2909944, rel=1e-6)
    assert (spread.min_ms, spread.max_ms) == (1.0, 4.0)
    assert Measurement.of([3.0, 1.0, 2.0], DeviceInfo("cpu", 1, "x", "Linux", "onnxruntime", "1", "CPU", 1)).latency_ms == 2.0


def test_device_fingerprint_ignores_shape_and_date_but_not_threads() -> None:
    device = OnnxRuntimeBackend().device()
    assert device.with_shape((1, 3, 32, 32)).fingerprint() == device.fingerprint()
    assert OnnxRuntimeBackend(threads=2).device().fingerprint() != device.fingerprint()
    assert DeviceInfo.from_dict(device.to_dict()) == device


@pytest.mark.parametrize(
    ("output", "ms"),
    [
        ('{"latency_ms": 12.5, "iqr_ms": 0.1}\n', 12.5),
        ("warming up\nmedian latency: 3.25 ms\n", 3.25),
        ("avg=4.1ms min=3.9ms\n", 3.9),
        ("Inference timings in us: Init: 2000, First inference: 9000\nmean 7.5 ms\n", 7.5),
        # a number after the key latency_ms, the unit optional there (it was refused without 'ms')
        ("latency_ms: 0.0184\n", 0.0184),
        ("latency_ms=2.5 ms\n", 2.5),
        ('{"latency_ms": 3.5}\ndone\n', 3.5),
        ("warm-up 40.0 ms\nlatency_ms 1.25\n", 1.25),
    ],
)
def test_command_output_is_parsed(output: str, ms: float) -> None:
    assert parse_command_output(output) == pytest.approx(ms)


def test_command_output_without_milliseconds_is_an_error() -> None:
    with pytest.raises(ValueError, match="printed no milliseconds") as raised:
        parse_command_output("done in 3 seconds\n")
    # what it says is accepted is accepted
    examples = [example for example in raised.value.args[0].split("'")[1::2] if example[:1].isalpha()]
    assert examples == ["latency_ms: 12.3", "median 12.3 ms"]
    assert [parse_command_output(example) for example in examples] == [12.3, 12.3]
    for output in ('{"latency_ms": 0}', '{"latency_ms": NaN}', "median 0 ms"):  # a JSON line passed 0 and NaN
        with pytest.raises(ValueError, match="which is not positive"):
            parse_command_output(output)
    # the key says what the number is: a later "N ms" does not win over it, and another unit is no milliseconds
    assert parse_command_output("latency_ms: 12.3\nwarm-up took 1500 ms\n") == 12.3
    for output in ("latency_ms: 12.3 us", "latency_ms: 12.3us"):
        with pytest.raises(ValueError, match="printed no milliseconds"):
            parse_command_output(output)


def test_command_backend_runs_the_worked_example_in_a_subprocess() -> None:
    template = f"{sys.executable} -m mobilenas.latency.ort_command {{model}} --threads {{threads}} --warmup 1 --repeats 3"
    backend = CommandBackend(template, device_name="this-machine")
    result = measure(tiny_arch(), backend, input_size=32)
    assert result.latency_ms > 0 and result.runs == 1
    assert result.device.runtime == "command" and result.device.command == template
    assert result.device.device_name == "this-machine"
    assert result.device.fingerprint() != OnnxRuntimeBackend().device().fingerprint()


def test_the_worked_example_refuses_counts_it_cannot_time(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.latency.ort_command import main as ort_command

    for argv, message in ((["m.onnx", "--repeats", "0"], "--repeats: expected a whole number >= 1, got 0"), (["m.onnx", "--warmup", "-1"], "--warmup: expected a whole number >= 0")):
        with pytest.raises(SystemExit) as exit_:
            ort_command(argv)  # --repeats 0 ended in an IndexError traceback
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_command_backend_checks_its_template() -> None:
    with pytest.raises(ValueError, match=r"no \{model\} placeholder"):
        CommandBackend("python bench.py model.onnx")
    with pytest.raises(ValueError, match=r"unknown placeholder.*\{device\}"):
        CommandBackend("python bench.py {model} {device}")
    with pytest.raises(ValueError, match="empty"):
        CommandBackend("  ")


def test_a_failing_command_is_reported_with_its_output() -> None:
    backend = CommandBackend(f"{sys.executable} -c \"import sys; print('no device attached', file=sys.stderr); sys.exit(3)\" {{model}}")
    with pytest.raises(ValueError, match="exit code 3: no device attached"):
        measure(tiny_arch(), backend, input_size=32)


def test_make_backend_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown latency backend 'tflite'"):
        make_backend("tflite")
    with pytest.raises(ValueError, match="needs --command"):
        make_backend("command")
    with pytest.raises(ValueError, match="threads"):
        OnnxRuntimeBackend(threads=0)


def test_a_command_without_a_device_name_is_not_labelled_with_this_cpu() -> None:
    # measure --command without --device-name said "AMD EPYC (2 cores, ...)" of what may be a phone
    from mobilenas.latency.device import cpu_model

    unnamed = CommandBackend("bench {model}").device().describe()
    assert unnamed.startswith("command: bench {model} (device not named), 1 thread") and cpu_model() not in unnamed
    assert CommandBackend("bench {model}", device_name="pixel7").device().describe().startswith("pixel7, command, 1 thread")
