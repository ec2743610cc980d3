"""The type stub cryodet/_cryodet.pyi is installed and matches the module's signatures."""

import ast
import importlib.resources
import inspect

import cryodet
from cryodet import _cryodet


def stub():
    text = importlib.resources.files("cryodet").joinpath("_cryodet.pyi").read_text()
    return ast.parse(text)


def params(fn: ast.FunctionDef):
    a = fn.args
    return [p.arg for p in a.posonlyargs + a.args if p.arg != "self"]


def test_stub_functions_and_methods_match_the_module():
    tree = stub()
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert set(funcs) == {"load_model", "evaluate", "read_voc", "write_voc"}
    for name, fn in funcs.items():
        assert params(fn) == list(inspect.signature(getattr(_cryodet, name)).parameters), name
    model = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    for fn in (n for n in model.body if isinstance(n, ast.FunctionDef)):
        attr = getattr(cryodet.Model, fn.name)
        if isinstance(attr, property) or not callable(attr):
            continue
        runtime = [p for p in inspect.signature(attr).parameters if p != "self"]
        if fn.name == "detect_volume":
            # Linking options: keyword-only in the stub, **link_options at run time.
            assert runtime[-1] == "link_options"
            assert [a.arg for a in fn.args.kwonlyargs] == [
                "link_iou", "max_gap", "min_slices", "fragment_overlap", "smooth", "merge_iou", "merge_gap"]
            runtime = runtime[:-1]
        assert params(fn) == runtime, fn.name
    assert set(cryodet.__all__) == set(funcs) | {"Model"}
