"""The flow layer: the router and its reader workers, the per-camera frame queue, a route's flow of
nodes with the table of node types and plugins, and the frame-counter registry."""

from bridge.flows.flow import BUILTIN_NODES, ENTRY_POINT_GROUP, Flow, resolve_node_type

__all__ = ["BUILTIN_NODES", "ENTRY_POINT_GROUP", "Flow", "resolve_node_type"]
