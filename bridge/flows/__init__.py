"""A route's flow of nodes, the table of node types and plugins, and the per-camera frame queue."""

from bridge.flows.flow import BUILTIN_NODES, ENTRY_POINT_GROUP, Flow, resolve_node_type

__all__ = ["BUILTIN_NODES", "ENTRY_POINT_GROUP", "Flow", "resolve_node_type"]
