"""Import a user-factory module written by a test, outside the CLI."""
import importlib.util


def load_factory(project, name):
    """Call my_models.<name>() from the project directory."""
    spec = importlib.util.spec_from_file_location("my_models_for_test", project / "my_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()
