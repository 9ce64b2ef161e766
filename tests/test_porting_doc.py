"""docs/porting.md's Python example runs as written."""
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_porting_doc_has_an_example():
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_porting_doc_example_runs(index):
    exec(compile(BLOCKS[index], f"docs/porting.md[python block {index}]", "exec"), {})
