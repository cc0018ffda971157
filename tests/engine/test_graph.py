"""Graph primitives: validation, inputs, order, builders."""

import numpy as np
import pytest

from byzdask.aggregators.average import Average
from byzdask.engine.graph.graph import (
    ComputationGraph,
    GraphInput,
    GraphNode,
    MessageSource,
    graph_input,
)
from byzdask.engine.graph.ops import (
    CallableOp,
    RemoteCallableOp,
    make_chain_graph,
    make_single_operator_graph,
)
from byzdask.errors import ConfigurationError


def op(fn=lambda **kw: kw, name=None):
    return CallableOp(fn, name=name)


def node(name, **inputs):
    return GraphNode(name, op(), inputs)


def test_empty_graph_is_rejected():
    with pytest.raises(ConfigurationError, match="at least one node"):
        ComputationGraph([])


def test_duplicate_names_are_rejected():
    with pytest.raises(ConfigurationError, match="Duplicate graph node name 'a'"):
        ComputationGraph([node("a"), node("a")])


def test_unknown_output_is_rejected():
    with pytest.raises(ConfigurationError, match="Unknown output node 'z'"):
        ComputationGraph([node("a")], outputs=["z"])


def test_reference_to_unknown_node_is_named_as_such():
    with pytest.raises(ConfigurationError, match="unknown node 'ghost'") as err:
        ComputationGraph([node("a", x="ghost")])
    assert "cycle" not in str(err.value)


@pytest.mark.parametrize("edges, path", [
    ({"a": {"x": "b"}, "b": {"x": "a"}}, "a -> b -> a"),
    ({"a": {"x": "a"}}, "a -> a"),
    ({"a": {"x": "c"}, "b": {"x": "a"}, "c": {"x": "b"}}, "a -> b -> c -> a"),
])
def test_cycles_are_rejected_with_their_path(edges, path):
    nodes = [node(name, **inputs) for name, inputs in edges.items()]
    with pytest.raises(ConfigurationError, match="cycle") as err:
        ComputationGraph(nodes)
    names = path.split(" -> ")
    assert set(names) <= set(str(err.value).split(": ")[1].split(" -> "))


def test_required_inputs_order_and_default_outputs():
    g = ComputationGraph([
        node("c", a="a", b="b"),
        node("a", v=graph_input("x")),
        node("b", v=graph_input("y"), w=GraphInput.from_message("m")),
        node("d", v=graph_input("x")),
    ])
    assert g.required_inputs == {"x", "y"}
    order = g.order
    assert order.index("a") < order.index("c") and order.index("b") < order.index("c")
    assert g.outputs == ["c", "d"]
    assert [n.name for n in g.nodes_in_order()] == list(order)
    assert g.dependents("a") == ["c"]
    assert g.message_sources == (MessageSource("m"),)
    assert len(g) == 4 and "c" in repr(g)


def test_outputs_may_be_given_as_a_string():
    g = ComputationGraph([node("a"), node("b", x="a")], outputs="a")
    assert g.outputs == ["a"]


def test_node_lookup_names_known_nodes():
    g = ComputationGraph([node("a")])
    with pytest.raises(KeyError, match="no node 'b'"):
        g.node("b")


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "", "op": Average()}, "non-empty"),
    ({"name": "a", "op": object()}, "must be an Operator"),
    ({"name": "a", "op": Average(), "inputs": [1]}, "must be a mapping"),
    ({"name": "a", "op": Average(), "inputs": {"x": 3}}, "GraphInput, a message source or a node name"),
    ({"name": "a", "op": Average(), "inputs": {1: "b"}}, "input keys must be strings"),
])
def test_graph_node_validation(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        GraphNode(**kwargs)


def test_graph_rejects_non_nodes():
    with pytest.raises(ConfigurationError, match="GraphNode objects"):
        ComputationGraph(["a"])


@pytest.mark.parametrize("kwargs, match", [
    ({"message_type": ""}, "message_type"),
    ({"message_type": "m", "field": 3}, "field"),
    ({"message_type": "m", "timeout": 0}, "timeout"),
    ({"message_type": "m", "timeout": True}, "timeout"),
])
def test_message_source_validation(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        MessageSource(**kwargs)


def test_message_source_extracts_fields():
    assert MessageSource("m").extract(5) == 5
    assert MessageSource("m", field="a").extract({"a": 1}) == 1
    with pytest.raises(KeyError, match="no field 'b'"):
        MessageSource("m", field="b").extract({"a": 1})
    with pytest.raises(TypeError, match="mapping"):
        MessageSource("m", field="b").extract(3)


def test_graph_input_needs_a_name():
    with pytest.raises(ConfigurationError):
        graph_input("")


def test_make_single_operator_graph():
    g = make_single_operator_graph(node_name="agg", operator=Average(), input_keys="gradients")
    assert g.outputs == ["agg"] and g.required_inputs == {"gradients"}
    assert g.node("agg").inputs == {"gradients": graph_input("gradients")}


def test_make_chain_graph_names_and_wires_nodes():
    first = CallableOp(lambda vectors: [v * 2 for v in vectors], name="double")
    again = CallableOp(lambda vectors: [v * 2 for v in vectors], name="double")
    g = make_chain_graph([first, again, Average()])
    assert g.order == ("double", "double-2", "average")
    assert g.node("double-2").inputs == {"vectors": "double"}
    assert g.node("average").inputs == {"gradients": "double-2"}
    assert g.required_inputs == {"gradients"}
    named = make_chain_graph([Average()], names=["agg"], input_name="grads")
    assert named.order == ("agg",) and named.required_inputs == {"grads"}


def test_make_chain_graph_errors():
    with pytest.raises(ConfigurationError, match="at least one"):
        make_chain_graph([])
    with pytest.raises(ConfigurationError, match="one name per operator"):
        make_chain_graph([Average()], names=["a", "b"])


def test_callable_op():
    add = CallableOp(lambda a, b: a + b, input_mapping={"a": "x", "b": "y"})
    assert add.compute({"x": 1, "y": 2}) == 3
    assert add.input_keys == ("x", "y")
    with pytest.raises(KeyError, match="needs input 'y'"):
        add.compute({"x": 1})
    with pytest.raises(TypeError, match="mapping"):
        add.compute([1])
    assert CallableOp(lambda **kw: sorted(kw)).compute({"p": 1, "q": 2}) == ["p", "q"]
    with pytest.raises(ConfigurationError, match="callable"):
        CallableOp(3)
    with pytest.raises(ConfigurationError, match="input_mapping"):
        CallableOp(len, input_mapping={"a": 1})


def test_remote_callable_op_validation():
    op_ = RemoteCallableOp(lambda x: x, input_mapping={"x": "x"}, affinity="gpu", max_retries=2)
    assert (op_.affinity, op_.max_retries) == ("gpu", 2)
    assert op_.compute({"x": np.ones(1)}).tolist() == [1.0]
    with pytest.raises(ConfigurationError, match="affinity"):
        RemoteCallableOp(len, affinity="")
    with pytest.raises(ConfigurationError, match="max_retries"):
        RemoteCallableOp(len, max_retries=-1)
