"""The key bar: Textual's :class:`~textual.widgets.Footer`, rebuilt once per burst of changes.

Textual's footer schedules a full rebuild (~25 ms with a dozen keys) for every "bindings
changed" signal, and one focus change or mount sends several in the same frame: the console
rebuilt it five times while it opened. Here a rebuild already scheduled absorbs the signals
that arrive before it runs, and a rebuild is skipped when the keys it would show are the ones
shown (a focus change signals twice: at once and again after the next refresh). It reads the
bindings as they are when it runs, so nothing is missed.

Quit and help come first: Textual lists the focused widget's keys, then the screen's, then the
app's, so ``^q Quit`` came last and an 80-column terminal cut it off with the help key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

#: Actions whose keys the bar shows first, in this order, however narrow the terminal.
FIRST = ("quit", "help")


class KeyBar(Footer):
    """A :class:`~textual.widgets.Footer` that coalesces its rebuilds and shows the keys of
    :data:`FIRST` first."""

    _rebuild_pending = False
    _shown: Hashable = None

    def compose(self) -> Iterable[Widget]:
        # Textual's footer starts empty and fills in after the first frame; the screen's keys
        # are known now, so the first frame shows them (and the later signal finds them shown).
        self._bindings_ready = True
        self._shown = self._keys()
        keys = list(super().compose())  # the screen's keys only: kyros groups none of them

        def rank(widget: Widget) -> int:
            action = getattr(widget, "action", None)  # a key's (FooterKey is not public)
            return FIRST.index(action) if action in FIRST else len(FIRST)

        return sorted(keys, key=rank)  # stable: the other keys keep their order

    def bindings_changed(self, screen: Screen[object]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        shown = self._keys()
        if shown != self._shown:
            self._shown = shown
            await self.recompose()

    def _keys(self) -> Hashable:
        """What the bar shows: the shown bindings' keys, labels, states and tooltips."""
        return tuple(
            (b.key, b.description, b.action, b.group, enabled, tooltip)
            for _node, b, enabled, tooltip in self.screen.active_bindings.values()
            if b.show or b.action in ("command_palette", "app.command_palette")
        )
