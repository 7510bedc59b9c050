"""Import a user-factory module written by a test, outside the CLI."""

import importlib.util


def load_factory(project, name, module_file="my_models.py"):
    """Call <module_file>.<name>() from the project directory."""
    spec = importlib.util.spec_from_file_location(f"{module_file[:-3]}_for_test", project / module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()
