"""Importing visiontl changes nothing global, and the command line's help needs no torch."""
import subprocess
import sys

import torch


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_help_answers_without_importing_torch():
    out = _run("import sys\nfrom visiontl.cli import main\n"
               "for argv in (['--help'], ['train', '--help'], *(['train', t, '--help'] for t in\n"
               "             ('classify', 'detect', 'segment', 'stylize'))):\n"
               "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
               "print(sorted(m for m in ('torch', 'matplotlib', 'albumentations', 'ultralytics', 'cv2') if m in sys.modules))")
    assert out.endswith("[]"), out[-500:]


def test_importing_the_adapters_and_plotting_choose_no_matplotlib_backend():
    """A notebook's inline backend survives: visiontl draws with Figure objects, never pyplot."""
    out = _run("import os, sys\nos.environ['MPLBACKEND'] = 'svg'\n"
               "import numpy as np\nfrom visiontl.adapters import Classifier, Detector, Segmenter, Stylizer\n"
               "from visiontl import plots\nimport tempfile\n"
               "plots.confusion(np.eye(2, dtype=int), ['a', 'b'], tempfile.mktemp(suffix='.png'))\n"
               "import matplotlib\nprint(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    assert out.splitlines()[-1] == "svg False", out[-500:]


def test_building_a_model_leaves_the_callers_random_state_alone():
    from visiontl.adapters import Classifier

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = Classifier(classes=["a", "b"], backbone="mobilenet_v3_small", weights="none")
    assert torch.equal(torch.rand(3), expected)  # not reseeded by the build
    second = Classifier(classes=["a", "b"], backbone="mobilenet_v3_small", weights="none")
    for p, q in zip(first.model.parameters(), second.model.parameters()):  # and still reproducible
        assert torch.equal(p, q)
