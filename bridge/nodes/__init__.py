"""Built-in flow nodes, one concern per module; `bridge.flows` holds the table of them."""

from bridge.nodes.base import Node, NodeContext, NodeSettings, Publisher, Reader
from bridge.nodes.consensus import ConsensusNode
from bridge.nodes.decode import DecodeNode
from bridge.nodes.dedupe import DedupeNode
from bridge.nodes.filter import FilterNode
from bridge.nodes.publish import PublishNode
from bridge.nodes.recognize import RecognizeNode
from bridge.nodes.split import SplitNode
from bridge.nodes.validate import ValidateNode
from bridge.nodes.watchlist import WatchlistNode

__all__ = [
    "ConsensusNode",
    "DecodeNode",
    "DedupeNode",
    "FilterNode",
    "Node",
    "NodeContext",
    "NodeSettings",
    "PublishNode",
    "Publisher",
    "Reader",
    "RecognizeNode",
    "SplitNode",
    "ValidateNode",
    "WatchlistNode",
]
