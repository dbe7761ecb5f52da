"""The HTML and Markdown reports (mcuquant.render), checked in headless Chromium.

The report is computed for real: the digits CNN (float and QAT) and its PTQ/QAT int8 conversions run
on LiteRT and TFLM, scored by `ladder.score_rungs`, with the interpreters' real agreement. The
"explain" section comes from `explain_section` below: shaped like report["explain"] of the schema,
its numbers derived from the same predictions and graphs wherever they can be (the per-layer error
values are made up but coherent: rendering is under test, not layers.py). The device rung stands in
for a board run that was bit-exact with tflm-host, as the demo on qemu-nano33 is.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from mcuquant import stats
from mcuquant.errors import ConfigError
from mcuquant.graph import Graph, quantization_differences
from mcuquant.interpreters import Runner, agreement, quantize
from mcuquant.ladder import Rung, score_rungs
from mcuquant.render import write_report

HOSTILE_RUNG = "qat/<script>window.pwned=1</script>"
HOSTILE_LAYER = '<img src=x onerror="window.pwned=2">conv2d'


# ---------------------------------------------------------------------------------------------
# A real report


def explain_section(graph: Graph, qat_graph: Graph, y: np.ndarray, classes: dict[str, np.ndarray],
                    rungs: list[dict], comparisons: list[dict]) -> dict:
    """report["explain"] for the rendering test (see the module docstring)."""
    by_id = {r["id"]: r for r in rungs}
    # Per-layer rows: the PTQ model's real operators and output quantization; errors grow with depth.
    rows = []
    for op in graph.operators:
        out = graph.tensors[op.outputs[0]]
        depth = op.index + 1
        rows.append({"op_index": op.index, "op": op.name, "tensor": out.name, "keras_layers": [f"layer{op.index}"],
                     "layer": f"layer{op.index}", "scale": out.scales[0], "zero_point": out.zero_points[0],
                     "n_values": 100 * int(np.prod(out.shape)), "rmse": 0.3 * depth * out.scales[0],
                     "max_abs_error": 1.5 * depth * out.scales[0], "rmse_over_scale": 0.3 * depth,
                     "max_over_scale": 1.5 * depth, "clipped_share": 0.004 if op.name == "FULLY_CONNECTED" else 0.0,
                     "local_rmse_over_scale": 0.29 if op.name == "CONV_2D" else None})
    rows[0]["layer"] = HOSTILE_LAYER
    rows.sort(key=lambda r: -r["rmse_over_scale"])
    layers = {"reference": "keras float model", "samples": 100, "rows": rows, "unmatched": [],
              "method": "test fixture"}

    # Range diff: the real scale differences of the PTQ and QAT activations.
    changed = quantization_differences(graph, qat_graph)
    tensors = [{"kind": "activation", "op": c["op"], "op_index_a": 0, "op_index_b": 0, "name_a": c["tensor_a"],
                "name_b": c["tensor_b"], "keras_layers": [], "shape": [], "scale_a": c["scale_a"],
                "scale_b": c["scale_b"], "zero_point_a": c["zero_point_a"], "zero_point_b": c["zero_point_b"],
                "relative_scale_difference": c["relative_scale_difference"],
                "zero_point_differs": c["zero_point_a"] != c["zero_point_b"],
                "values_differing": None, "max_value_difference": None} for c in changed["changed"]]
    unchanged = {"kind": "input", "op": "input", "op_index_a": -1, "op_index_b": -1, "name_a": "input",
                 "name_b": "input", "keras_layers": [], "shape": [1, 8, 8, 1], "scale_a": [0.0039], "scale_b": [0.0039],
                 "zero_point_a": [-128], "zero_point_b": [-128], "relative_scale_difference": 0.0,
                 "zero_point_differs": False, "values_differing": None, "max_value_difference": None}
    ptq, qat = classes["ptq/tflm-host"], classes["qat/tflm-host"]
    flips = np.flatnonzero(ptq != qat)
    diff = {"a": {"name": "ptq.tflite", "bytes": 1, "sha256": "0"}, "b": {"name": "qat.tflite", "bytes": 1, "sha256": "0"},
            "tensors": tensors + [unchanged],
            "summary": {"matched": changed["compared"], "unmatched_a": [], "unmatched_b": [],
                        "scale_differs": len(tensors), "zero_point_differs": sum(t["zero_point_differs"] for t in tensors),
                        "constants_differ": 0},
            "outputs": {"n": len(y), "same_prediction": int(len(y) - flips.size), "agreement_rate": 1 - flips.size / len(y),
                        "byte_identical": None, "class_flips": int(flips.size),
                        "flips": [{"index": int(i), "label": int(y[i]), "class_a": int(ptq[i]), "class_b": int(qat[i])}
                                  for i in flips],
                        "error_rate_a": by_id["ptq/tflm-host"]["error_rate"], "error_rate_b": by_id["qat/tflm-host"]["error_rate"]}}

    # Samples needed to resolve each adjacent gap, from the measured discordance.
    sample_size = []
    for c in comparisons:
        if c["error_rate_a"] == c["error_rate_b"]:
            continue
        discordant = (c["a_only_correct"] + c["b_only_correct"]) / c["n"]
        sample_size.append({"a": c["a"], "b": c["b"], "error_rate_a": c["error_rate_a"], "error_rate_b": c["error_rate_b"],
                            "gap_points": c["diff_points"], "discordant_rate": discordant, "n": c["n"],
                            "samples_needed": stats.samples_to_resolve(c["error_rate_a"], c["error_rate_b"], discordant),
                            "distinguishable": c["mcnemar_p"] < 0.05, "given_gap_points": 1.0,
                            "samples_needed_for_given_gap": stats.samples_to_resolve(0.05, 0.06, 0.02)})

    # Float, host and device predictions that disagree (the device equals the host here).
    float_, host, device = classes["keras-float"], classes["ptq/tflm-host"], classes["ptq/device"]
    disagreements = [{"rung": "ptq/device", "index": int(i), "label": int(y[i]), "float_class": int(float_[i]), "host_class": int(host[i]),
                      "device_class": int(device[i]), "step": "quantization",
                      "why": "the host int8 model already predicts this"}
                     for i in np.flatnonzero((float_ != host) | (host != device))]
    gap = by_id["ptq/tflm-host"]["error_rate"] - by_id["keras-float"]["error_rate"]
    return {
        "findings": [
            {"id": "a", "title": "PTQ costs little on digits",
             "sentences": [f"ptq/tflm-host's error rate is {100 * gap:+.2f} points from keras-float's."]},
            {"id": "b", "title": "The device matches its oracle",
             "sentences": ["ptq/device gave byte-identical outputs to ptq/tflm-host on every sample."]},
        ],
        "weights_copied": {"diff": diff, "note": "PTQ vs QAT of the same network"},
        "calibration": {"rungs": [by_id["ptq/litert"], by_id["ptq/tflm-host"]],
                        "comparison": next(c for c in comparisons if (c["a"], c["b"]) == ("ptq/litert", "ptq/tflm-host"))},
        "sample_size": sample_size,
        "device": {"board": "qemu-nano33", "disagreements": disagreements,
                   "by_step": {"quantization": len(disagreements), "kernel implementation": 0, "transport": 0}},
        "layers": {"ptq": layers},
    }


DEVICE_FIELDS = {"board": "qemu-nano33", "emulated": True, "backend": "builtin", "oracle": "tflm-host",
                 "max_lsb_difference": 0, "class_flips": 0, "mismatches": [],
                 "latency": {"unit": "instructions", "median": 3152880.5, "p95": 3153371, "n": 0,
                             "note": "guest instructions per inference counted by QEMU -icount"},
                 "arena_bytes": 5312, "flash_bytes": 70928, "flash_limit": 983040, "ram_bytes": 23664, "ram_limit": 262144}


@pytest.fixture(scope="module")
def report(digits, trained_digits_cnn) -> dict:
    from mcuquant.quantize import convert_ptq, convert_qat

    float_model, qat_model, representative = trained_digits_cnn
    x, y = digits.x_test, digits.y_test
    classes = {"keras-float": np.argmax(float_model.predict(x, verbose=0), axis=-1),
               "keras-qat": np.argmax(qat_model.predict(x, verbose=0), axis=-1)}
    rungs = [Rung(name, predictions) for name, predictions in classes.items()]
    conversions, agreements, graphs = {}, [], {}
    for conversion in (convert_ptq(float_model, representative), convert_qat(qat_model, representative)):
        variant, tflite = conversion.variant, conversion.tflite
        conversions[variant] = conversion.summary()
        tflm = Runner("tflm-host", tflite)
        graphs[variant] = tflm.graph
        xq = quantize(x, tflm.input)
        raw = {kind: Runner(kind, tflite).run(xq, progress=False) for kind in ("litert", "tflm-host")}
        for kind, out in raw.items():
            rungs.append(Rung(f"{variant}/{kind}", np.argmax(out, axis=-1), out))
        if variant == "ptq":
            rungs.append(Rung("ptq/device", np.argmax(raw["tflm-host"], axis=-1), raw["tflm-host"]))
        agreements.append({"variant": variant, **agreement(tflite, xq, "litert", raw["litert"], "tflm-host",
                                                           raw["tflm-host"], classification=True, max_traced=3)})
    rungs.append(Rung(HOSTILE_RUNG, rungs[-1].predictions))
    classes.update({r.id: r.predictions for r in rungs})
    results, comparisons = score_rungs(rungs, y, "classification")
    device = next(r for r in results if r["id"] == "ptq/device")
    device.update(DEVICE_FIELDS, bit_exact=device["n"], bit_exact_rate=1.0)
    agreements.append({"variant": "ptq", "a": "device", "b": "tflm-host", "board": "qemu-nano33", "n": device["n"],
                       "bit_exact": device["n"], "bit_exact_rate": 1.0, "max_lsb_difference": 0, "class_flips": 0,
                       "mismatches": [], "traced_samples": 0, "first_divergence_by_op": []})
    result = {
        "mcuquant_version": "test", "created": "2026-01-01T00:00:00+0000", "task": "classification",
        "dataset": {"name": "builtin:digits", "task": "classification", "n_test": len(y),
                    "num_classes": digits.num_classes, "class_names": [str(c) for c in range(digits.num_classes)]},
        "model": {"name": float_model.name, "parameters": int(float_model.count_params())},
        "conversions": conversions, "rungs": results, "comparisons": comparisons, "agreement": agreements,
        "explain": explain_section(graphs["ptq"], graphs["qat"], y, classes, results, comparisons),
    }
    return json.loads(json.dumps(result))  # exactly what report.json would hold


@pytest.fixture(scope="module")
def written(report, tmp_path_factory) -> dict:
    return write_report(report, tmp_path_factory.mktemp("report"))


# ---------------------------------------------------------------------------------------------
# Headless Chromium


@pytest.fixture(scope="module")
def page(browser, written):
    """report.html opened from disk, with every request it made."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(written["html"].as_uri(), wait_until="load")
    page.requests = requests
    yield page
    page.close()


def _decoded_width(page, selector: str) -> int:
    return page.evaluate("s => { const i = document.querySelector(s); return i && i.complete ? i.naturalWidth : -1; }",
                         selector)


def test_html_report_renders_offline_with_every_figure_decoded(page, report, tmp_path):
    from PIL import Image

    screenshot = tmp_path / "report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width >= 1000 and height > 3000  # every section, not just a header
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # plots and tables, not a blank page
    assert _decoded_width(page, "#ladder-plot") > 0
    confusion = page.eval_on_selector_all("img.confusion-plot", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
    assert len(confusion) == len(report["rungs"]) and all(w > 0 for w in confusion)
    assert _decoded_width(page, "img.layers-plot") > 0
    assert all(src.startswith("data:image/png;base64,")
               for src in page.eval_on_selector_all("img", "imgs => imgs.map(i => i.getAttribute('src'))"))
    assert page.requests and all(url.startswith(("file:", "data:")) for url in page.requests), page.requests


def test_html_tables_hold_the_report_rows(page, report):
    ids = page.eval_on_selector_all("#ladder-table tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
    assert ids == [r["id"] for r in report["rungs"]]
    ptq_device = page.eval_on_selector_all("#ladder-table tbody tr", "rows => rows.map(r => r.innerText)")[ids.index("ptq/device")]
    rung = next(r for r in report["rungs"] if r["id"] == "ptq/device")
    assert f"{100 * rung['error_rate']:.2f}%" in ptq_device and "qemu-nano33" in ptq_device
    assert page.locator("#comparisons-table tbody tr").count() == len(report["comparisons"])
    differing = [t for t in report["explain"]["weights_copied"]["diff"]["tensors"]
                 if t["relative_scale_difference"] > 0 or t["zero_point_differs"]]
    assert differing, "the PTQ and QAT conversions should differ in some activation scale"
    assert page.locator("#range-diff-table tbody tr").count() == len(differing)
    layer_rows = report["explain"]["layers"]["ptq"]["rows"]
    assert page.locator("table.layers-table tbody tr").count() == len(layer_rows)
    assert page.locator("#agreement-table tbody tr").count() == len(report["agreement"])
    assert page.locator("#sample-size-table tbody tr").count() == len(report["explain"]["sample_size"])
    device = page.inner_text("#device-table")
    assert "70,928 of 983,040" in device and "3,152,880" in device and "instructions" in device
    assert page.locator("#findings article").count() == 2


def test_names_are_rendered_as_text_never_run(page):
    assert page.evaluate("window.pwned") is None
    assert page.locator("script").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert HOSTILE_RUNG in page.inner_text("#ladder-table")
    assert HOSTILE_LAYER in page.inner_text("table.layers-table")


# ---------------------------------------------------------------------------------------------
# Markdown and the files


def test_markdown_has_the_tables_and_links_figures_that_exist(written, report):
    text = written["markdown"].read_text(encoding="utf-8")
    for rung in report["rungs"]:
        if rung["id"] == HOSTILE_RUNG:
            continue
        row = f"| {rung['id']} | {rung['n']} | {rung['errors']} | {100 * rung['error_rate']:.2f}% |"
        assert row in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 1 + len(report["rungs"]) + 1  # ladder, confusion matrices, per-layer chart
    for link in links:
        png = written["markdown"].parent / link
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    # Escaped for Markdown: neither a table cell break nor raw HTML.
    assert r"qat/\<script\>window.pwned=1\</script\>" in text
    assert r"\<img src=x" in text
    assert not re.search(r"(?<!\\)<", text), "an unescaped < would open raw HTML"


def test_html_is_self_contained(written):
    html = written["html"].read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(?!data:)", html)
    assert "http://" not in html and "https://" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html


def test_missing_sections_say_not_measured(tmp_path):
    minimal = {"task": "classification", "rungs": [{"id": "keras-float", "n": 10, "errors": 1, "error_rate": 0.1,
                                                   "ci95": [0.02, 0.4]}]}
    paths = write_report(minimal, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count("not measured") >= 8
    assert 'id="ladder-plot"' in html and 'id="range-diff-table"' not in html
    unlabelled = write_report({"rungs": [{"id": "ptq/device", "n": 5, "board": "b", "latency": {}}]}, tmp_path / "u")
    assert "ladder-plot" not in unlabelled["html"].read_text(encoding="utf-8")


def test_regression_report_plots_mae(tmp_path):
    y = np.linspace(0.0, 1.0, 40)
    rungs = [Rung("keras-float", y + 0.01), Rung("ptq/tflm-host", y + np.where(np.arange(40) % 2, 0.03, -0.02))]
    results, comparisons = score_rungs(rungs, y, "regression")
    paths = write_report(json.loads(json.dumps({"task": "regression", "rungs": results, "comparisons": comparisons})),
                         tmp_path)
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "| ptq/tflm-host | 40 | 0.025 |" in text and "Wilcoxon" in text
    assert (tmp_path / "report_files" / "ladder-plot.png").stat().st_size > 1000


@pytest.mark.parametrize("not_a_report", [{"ladder": []}, [], {"rungs": "x"}, {"rungs": [{"n": 3}]}])
def test_a_file_that_is_not_a_report_is_refused(not_a_report, tmp_path):
    with pytest.raises(ConfigError, match="not a mcuquant report"):
        write_report(not_a_report, tmp_path)
