"""onnx2tf's test inferences, each computing only what the one before did not.

To choose among layouts, onnx2tf's translators (MatMul, Add, Concat, ... 28 of them) run the Keras
model built so far on its test input and compare with ONNX Runtime's value of the same tensor
(`dummy_tf_inference`). Each run starts from the inputs again, so a graph of n such ops costs n
runs of an ever longer prefix: on deit_tiny, 144 runs took 7.5 s of the 13.3 s translation.

The prefix only grows: a tensor onnx2tf has built never changes, and a conversion feeds every run the
same few test inputs. `incremental_test_inference` keeps the values computed so far, by
test input, and computes of each run only the layers its outputs need and no kept value covers, found
back from the outputs, in Keras's own order and through Keras's own call of each layer, so every value
is the one a whole run would give. Values are kept up to a byte budget, the least recently used
dropped first; a dropped one is computed again only when a run needs it, and a run's own values go
once no later layer reads them. Computing every dropped layer again (each run did before) made the
runs quadratic once a graph's values outgrew the budget: xcit_tiny_24_p8_384 (2304 tokens) took
241 s and 6.5 GiB to translate.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import pkgutil
from collections import Counter, OrderedDict

import numpy as np

# What the kept values may hold: the tensors just built are the ones the next test reads.
# Since a run computes only what its outputs need, a small budget costs little time: at 64 MiB rather
# than 256, fastvit_mci0's translation peaks 140 MiB lower (1301-1304 against 1443-1448 MiB) in
# 5.8-7.9 s against 6.3-6.8 s, and xcit_tiny_24_p8_384's takes 31 s against 30 s.
BUDGET_BYTES = 64 << 20


@contextlib.contextmanager
def incremental_test_inference():
    """onnx2tf's dummy_tf_inference, everywhere onnx2tf calls it, runs incrementally during a conversion."""
    import onnx2tf.ops
    import onnx2tf.utils.common_functions as common

    original = common.dummy_tf_inference
    values = _Values()
    modules = [common] + [
        module
        for info in pkgutil.iter_modules(onnx2tf.ops.__path__)
        if getattr(module := importlib.import_module(f"onnx2tf.ops.{info.name}"), "dummy_tf_inference", None)
        is original
    ]

    @functools.wraps(original)
    def dummy_tf_inference(*, model, **kwargs):
        return original(model=_Incremental(model, values), **kwargs)

    for module in modules:
        module.dummy_tf_inference = dummy_tf_inference
    try:
        yield
    finally:
        for module in modules:
            module.dummy_tf_inference = original
        values.clear()  # the values, and the graph their tensors hold, go before the SavedModel is written


class _Values:
    """Computed values by test input and Keras tensor id. The tensors are held with their values, so that an
    id is never reused for another tensor while its value is kept."""

    def __init__(self):
        self.kept: OrderedDict[tuple[bytes, str], tuple[object, object]] = OrderedDict()  # least recent first
        self.bytes = 0

    def get(self, feeds_key: bytes, tensor_id: str):
        found = self.kept.get((feeds_key, tensor_id))
        if found is not None:
            self.kept.move_to_end((feeds_key, tensor_id))
        return found

    def put(self, feeds_key: bytes, tensor_id: str, tensor, value) -> None:
        if (feeds_key, tensor_id) not in self.kept:
            self.kept[(feeds_key, tensor_id)] = (tensor, value)
            self.bytes += _nbytes(value)

    def clear(self) -> None:
        self.kept.clear()
        self.bytes = 0

    def trim(self) -> None:
        while self.bytes > BUDGET_BYTES and self.kept:
            _, (_, value) = self.kept.popitem(last=False)
            self.bytes -= _nbytes(value)


class _Incremental:
    """A functional Keras model that is called through values: what was computed before is not computed again."""

    def __init__(self, model, values: _Values):
        self._model, self._values = model, values

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __call__(self, inputs, training=False):
        import tensorflow as tf

        model, values = self._model, self._values
        feeds = model._flatten_to_reference_inputs(inputs)
        key = _feeds_key(feeds)
        computed: dict[str, object] = {}  # this run's values, each dropped once no later layer reads it
        for reference, feed in zip(model.inputs, feeds):
            # as a Keras call converts its inputs: an output that is an input is a tensor too
            feed = tf.convert_to_tensor(feed) if isinstance(feed, np.ndarray) else feed
            computed[str(id(reference))] = model._conform_to_reference_input(feed, ref_input=reference)
        wanted = [str(id(output)) for output in model.outputs]
        plan = _plan(model, wanted, computed, values, key)
        reads = Counter(i for node in plan for i in node.flat_input_ids)
        for node in plan:
            if any(i not in computed for i in node.flat_input_ids):
                continue  # not computable from these inputs, as Keras skips it
            args, kwargs = node.map_arguments(_Reusable(computed))
            results = tf.nest.flatten(node.layer(*args, **kwargs))
            outputs = tf.nest.flatten(node.outputs)
            for tensor_id, tensor, value in zip(node.flat_output_ids, outputs, results):
                computed[tensor_id] = value
                values.put(key, tensor_id, tensor, value)
            for tensor_id in node.flat_input_ids:
                reads[tensor_id] -= 1
                if reads[tensor_id] == 0 and tensor_id not in wanted:
                    computed.pop(tensor_id, None)
            values.trim()
        results = [computed[i] for i in wanted]
        return tf.nest.pack_sequence_as(model._nested_outputs, results)


def _plan(model, wanted: list[str], computed: dict, values: _Values, key: bytes) -> list:
    """The layers to call, in Keras's order, for the wanted tensors: those whose outputs are neither fed
    nor kept, found back from the wanted ones (the kept values met on the way go into computed)."""
    depth = {id(node): d for d, nodes in model._nodes_by_depth.items() for node in nodes}
    producer = {i: node for nodes in model._nodes_by_depth.values() for node in nodes for i in node.flat_output_ids}
    needed: dict[int, object] = {}
    todo, seen = list(wanted), set()
    while todo:
        tensor_id = todo.pop()
        if tensor_id in seen or tensor_id in computed:
            continue
        seen.add(tensor_id)
        if (kept := values.get(key, tensor_id)) is not None:
            computed[tensor_id] = kept[1]
            continue
        node = producer.get(tensor_id)
        if node is None or node.is_input or id(node) in needed:
            continue
        needed[id(node)] = node
        todo.extend(node.flat_input_ids)
    return sorted(needed.values(), key=lambda n: -depth[id(n)])


class _Reusable(dict):
    """Keras's node.map_arguments pops one use of each value per read; here every value can be read again."""

    def __getitem__(self, key):
        return _Again(dict.__getitem__(self, key))


class _Again:
    def __init__(self, value):
        self.value = value

    def pop(self):
        return self.value


def _feeds_key(feeds) -> bytes:
    digest = hashlib.sha256()
    for feed in feeds:
        array = np.asarray(feed)
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


def _nbytes(value) -> int:
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None or None in tuple(shape):
        return 0
    return int(np.prod(tuple(shape), dtype=np.int64)) * getattr(dtype, "size", 4)
