"""scripts/witness.py, the narrow-domain experiment of issue 20, runs end to end on a tiny
budget: it fine-tunes, samples held-out drawings under every row, and writes its table, its
results and a contact sheet."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a real process that trains and samples: about 40 s on 2 idle cores
def test_the_witness_runs_end_to_end_on_a_tiny_budget(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "witness.py"), "-o",
                           str(tmp_path), "--quick"], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert set(rows) == {"full (lambda 0.5)", "lambda 0", "lambda 1", "no composition",
                         "lambda 0.5 (logit rule)", "lambda 1 (logit rule)",
                         "lambda 0.5 (weight rule)", "lambda 1 (weight rule)",
                         "full + frame alignment", "full, eq. 9 as printed (logit, 1/50)"}
    for row in rows.values():
        assert row["clips"] == 3 and 0 <= row["fidelity_compensated"] <= 1
    # The fine-tune records no rule: the logit rule's rows are the model's own, sampled once.
    assert rows["lambda 1 (logit rule)"]["same_as"] == "lambda 1"
    assert rows["lambda 0.5 (logit rule)"]["same_as"] == "full (lambda 0.5)"
    assert "same_as" not in rows["lambda 1 (weight rule)"]
    assert results["text_only"]["clips"] == 4
    assert len(results["checks"]) == 9
    table = (tmp_path / "table.md").read_text()
    assert table.count("PASS") + table.count("FAIL") == 9
    sheet = np.asarray(Image.open(tmp_path / "witness.png"))
    assert sheet.min() < 128 < sheet.max()  # ink on paper, not a blank image
    assert (tmp_path / "model" / "model_index.json").is_file()  # the fine-tune was exported
    assert "s = 0.02, logit rule" in table  # the model records none: the paper's

    # The sweep of eq. 9's rule and constant on the fine-tune (--quick: the grid's two ends),
    # its choice recorded in the model's UNet config, where the sampler reads its defaults.
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "witness.py"), "-o",
                           str(tmp_path / "cal"), "--quick", "--calibrate",
                           str(tmp_path / "model"), "--record"], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    found = (tmp_path / "cal" / "calibration.md").read_text()
    rows = [line for line in found.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [float(r.split("|")[1]) for r in rows] == [0.02, 2.0]
    config = json.loads((tmp_path / "model" / "unet" / "config.json").read_text())
    assert config["lambda_rule"] in ("logit", "weight") and config["lambda_scale"] in (0.02, 2.0)
    assert f"chosen: lambda_rule {config['lambda_rule']}, lambda_scale " in found


def test_calibration_takes_the_largest_s_that_still_moves_then_the_rule_that_keeps_more():
    witness = load_witness()
    high = {"logit": {0.1: (0.60, 11.0), 1.0: (0.70, 7.0), 2.0: (0.80, 5.0)},
            "weight": {0.1: (0.65, 10.0), 1.0: (0.74, 6.5), 2.0: (0.85, 2.0)}}
    # lambda 0 moves 12 px: s = 2 freezes both rules (5 and 2 px, under half of 12)
    assert witness.choose_calibration(12.0, high) == {"lambda_rule": "weight",
                                                      "lambda_scale": 1.0}
    assert witness.choose_calibration(9.0, high) == {"lambda_rule": "logit",
                                                     "lambda_scale": 2.0}
    # Nothing moves enough: the smallest s, the nearest to a free clip.
    assert witness.choose_calibration(40.0, high)["lambda_scale"] == 0.1

def test_the_witness_evaluates_a_subset_of_rows_and_checks_only_what_they_can_tell():
    witness = load_witness()
    rows = {"full (lambda 0.5)": {"fidelity_compensated": 0.7, "direction_accuracy": 0.95},
            "no composition": {"fidelity_compensated": 0.55}}
    found = witness.checks({"rows": rows, "text_only": {"direction_accuracy": 0.5}})
    assert found == {"composition keeps the drawing (+0.10)": True,
                     "sketch direction >= 90 %": True, "text-only direction >= 90 %": False}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "witness.py"), "-o", "/x",
                           "--evaluate-only", "m", "--rows", "lambda 7"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "unknown row(s) ['lambda 7']" in done.stderr


def load_witness():
    spec = importlib.util.spec_from_file_location("witness", ROOT / "scripts" / "witness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
