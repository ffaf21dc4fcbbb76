import json

import pytest

from labkit import bench


def test_bench_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--models", "cnn", "--steps", "1", "--repeats", "1", "--batch-size", "16",
                       "--device", "cpu", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    entry = report["models"]["cnn"]
    assert entry["reference"]["precision"] == "fp32"
    assert entry["fast"]["images_per_s"] > 0 and entry["speedup"] > 0
    assert set(report["matmul_peak_gflops"]) == set(report["conv_peak_gflops"]) == {"fp32", "bf16"}
    # the share is of the faster of the two peaks, so no layer of the model can pass it by much
    assert entry["fast"]["peak_share"] == pytest.approx(
        entry["fast"]["achieved_gflops"] / max(report[key][entry["fast"]["precision"]]
                                             for key in ("matmul_peak_gflops", "conv_peak_gflops")))
    assert 0 < entry["fast"]["peak_share"] < 1.5
    assert out.with_suffix(".png").is_file()
    assert bench.model_panel_title("cnn", {"speedup": 2.44}) == "cnn\nfast path: 2.4× reference speed"
    assert bench.model_panel_title("cnn", {"fast": entry["fast"]}) == "cnn"     # no reference measured: no ratio


def test_doctor_reports_the_machine_and_times_a_short_training(isolated_roots, capsys):
    from labkit import doctor

    assert doctor.main(["--models", "cnn", "--steps", "1", "--batch-size", "16", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for fact in ("precision_auto", "torch_version", "data_auto", "img/s", "TFLOP/s"):
        assert fact in printed
    [written] = (isolated_roots / "results" / "benchmarks").glob("*-doctor.json")
    report = json.loads(written.read_text())
    assert report["kind"] == "doctor" and report["environment"]["device_type"] == "cpu"
    assert report["models"]["cnn"]["fast"]["images_per_s"] > 0
    assert written.with_suffix(".png").is_file()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_doctor_on_a_gpu_measures_fp16_and_picks_by_compute_capability(isolated_roots):
    from labkit import doctor

    assert doctor.main(["--models", "resnet18", "--steps", "10"]) == 0
    [written] = (isolated_roots / "results" / "benchmarks").glob("*-doctor.json")
    report = json.loads(written.read_text())
    assert "fp16" in report["matmul_peak_gflops"] and "fp16" in report["conv_peak_gflops"]
    assert report["environment"]["compute_capability"]


def test_a_peak_is_the_faster_of_matmul_and_convolution_and_older_files_keep_their_matmul_peak():
    from labkit.reporting.stats import compiled_fast_path, peak_for, peak_ratios

    both = {"matmul_peak_gflops": {"fp32": 220.0, "bf16": 930.0}, "conv_peak_gflops": {"fp32": 490.0, "bf16": 900.0}}
    assert peak_for(both, "fp32") == 490.0 and peak_for(both, "bf16") == 930.0
    assert peak_for({"matmul_peak_gflops": {"fp32": 220.0, "bf16": 930.0}}, "bf16") == 930.0   # before conv
    assert peak_for(both, "fp16") == 490.0        # a precision the file did not measure: fp32's, as before
    assert peak_ratios(both) == pytest.approx({"matmul": 930 / 220, "convolution": 900 / 490})
    with pytest.raises(ValueError, match="CPU X .*has no matmul_peak_gflops: rerun python -m labkit.bench"):
        peak_for({"device": "CPU X", "models": {}}, "fp32")
    # compiled in the fast path's own precision (fp32 too, on a CPU without bf16), or the old fp32 reference
    assert compiled_fast_path({"fast": {"precision": "fp32"}, "compiled": {"precision": "fp32"}})
    assert not compiled_fast_path({"fast": {"precision": "bf16"}, "compiled": {"precision": "fp32"}})
    assert not compiled_fast_path({"fast": {"precision": "bf16"}})
