"""The site tree: sites and their devices, labels drawn from node data.

Following textual-notes §1.2: labels are rendered from ``node.data`` and only
nodes whose data changed are refreshed; the tree is rebuilt only when its shape
(which sites and devices, in which order) changes.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from fleettui.tui.model import GLYPHS, MARK_GLYPHS, DeviceRow, SiteRow, structure

NodeData = SiteRow | DeviceRow | None


class SiteTree(Tree[NodeData]):
    """Site → devices, with status glyphs, per-site counts and flapping markers."""

    BINDINGS = [  # noqa: RUF012 (Textual's class-level convention)
        Binding("j", "cursor_down", "Down", show=False, id="tree.down"),
        Binding("k", "cursor_up", "Up", show=False, id="tree.up"),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        self._widths: dict[tuple[object, ...], int] = {}  # Tree.__init__ measures labels
        self.device_nodes: dict[str, TreeNode[NodeData]] = {}
        self.site_nodes: dict[str, TreeNode[NodeData]] = {}
        super().__init__("fleet", id=id)
        self.show_root = False
        self.guide_depth = 2
        self._shape: list[tuple[str, tuple[str, ...]]] = []

    def render_label(self, node: TreeNode[NodeData], base_style: Style, style: Style) -> Text:
        """Draw a site or device line from its data."""
        data = node.data
        if isinstance(data, DeviceRow):
            d = data.device
            glyph, colour = GLYPHS[d.status]
            parts: list[tuple[str, Style | str] | str] = [
                (f"{glyph} ", Style(color=colour)), (d.id, style)
            ]
            if d.status.value != "online":
                parts.append((f" {d.status.value}", Style(color=colour)))
            for mark, note in data.labelled_marks():
                mark_glyph, mark_colour = MARK_GLYPHS[mark]
                parts.append((f" {mark_glyph} {note}", Style(color=mark_colour, bold=True)))
            return Text.assemble(*parts)
        if isinstance(data, SiteRow):
            colour = "green" if data.online == data.total else (
                "red" if data.online == 0 else "yellow")
            prefix = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
            return Text.assemble(
                (prefix, base_style), (data.site.name, style + Style(bold=True)),
                ("  ", style), (f"{data.online}/{data.total} online", Style(color=colour)),
            )
        return super().render_label(node, base_style, style)

    @property
    def selected_id(self) -> tuple[str, str] | None:
        """("device", id) or ("site", id) under the cursor."""
        node = self.cursor_node
        if node is None or node.data is None:
            return None
        kind = "device" if isinstance(node.data, DeviceRow) else "site"
        return kind, node.data.id

    def show(self, arranged: list[SiteRow]) -> None:
        """Show these sites and devices: rebuild if the shape changed, else repaint changes."""
        shape = structure(arranged)
        if shape != self._shape:
            if _members(shape) == _members(self._shape):
                self._reorder(arranged, shape)
            else:
                self._rebuild(arranged, shape)
            return
        for site in arranged:
            node = self.site_nodes[site.id]
            old = node.data
            node.data = site
            if not isinstance(old, SiteRow) or old.key() != site.key():
                node.refresh()
            for row in site.devices:
                dnode = self.device_nodes[row.id]
                before = dnode.data
                dnode.data = row
                if not isinstance(before, DeviceRow) or before.key() != row.key():
                    dnode.refresh()

    def _reorder(self, arranged: list[SiteRow], shape: list[tuple[str, tuple[str, ...]]]) -> None:
        """The same sites and devices in a new order ("problems first" moved some): put
        the existing nodes in that order instead of rebuilding 500 of them, which made
        a key pressed during a burst of changes wait for the rebuild."""
        keep = self.selected_id
        self.root._children[:] = [self.site_nodes[site.id] for site in arranged]
        for site in arranged:
            node = self.site_nodes[site.id]
            node.data = site
            node._children[:] = [self.device_nodes[row.id] for row in site.devices]
            for row in site.devices:
                self.device_nodes[row.id].data = row
        self._shape = shape
        self._invalidate()
        self.focus_on(keep)

    def get_label_width(self, node: TreeNode[NodeData]) -> int:
        """A label's width, remembered per node and label content: Textual measures
        every line's label after any change to the tree."""
        data = node.data
        key = (id(node), data.key() if data is not None else None, node.is_expanded)
        width = self._widths.get(key)
        if width is None:
            if len(self._widths) > 8 * (len(self.device_nodes) + len(self.site_nodes) + 8):
                self._widths.clear()
            width = self._widths[key] = super().get_label_width(node)
        return width

    def _rebuild(self, arranged: list[SiteRow], shape: list[tuple[str, tuple[str, ...]]]) -> None:
        keep = self.selected_id
        self._widths.clear()
        self.clear()
        self.device_nodes.clear()
        self.site_nodes.clear()
        for site in arranged:
            snode = self.root.add(site.site.name, data=site, expand=True)
            self.site_nodes[site.id] = snode
            for row in site.devices:
                self.device_nodes[row.id] = snode.add_leaf(row.id, data=row)
        self._shape = shape
        self.focus_on(keep)

    def focus_on(self, target: tuple[str, str] | None) -> bool:
        """Move the cursor to a device or site node, if shown."""
        if target is None:
            return False
        kind, ident = target
        node = (self.device_nodes if kind == "device" else self.site_nodes).get(ident)
        if node is None:
            return False
        self.call_after_refresh(self.move_cursor, node)
        return True


def _members(shape: list[tuple[str, tuple[str, ...]]]) -> dict[str, frozenset[str]]:
    """Which devices each site shows, whatever the order."""
    return {site: frozenset(devices) for site, devices in shape}
