import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_quick_start_runs_and_finds_a_good_model():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    search = namespace["search"]
    assert isinstance(search.best_params_["nnclassifier__module__hidden_layer_sizes"], tuple)
    assert search.best_score_ > 0.9
