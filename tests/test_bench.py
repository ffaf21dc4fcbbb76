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
    assert set(report["matmul_peak_gflops"]) == {"fp32", "bf16"}
    assert 0 < entry["fast"]["peak_share"] < 1.5
    assert out.with_suffix(".png").is_file()


def test_bench_rejects_unknown_models():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        bench.main(["--models", "vgg", "--output", "/dev/null"])
