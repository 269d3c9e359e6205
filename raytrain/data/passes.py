"""The pass counter of a run's patch streams, in a module of its own with no imports: the 0-CPU actor that holds it
(:data:`raytrain.data.pipeline.PassCounter`, or the run's progress board) starts without importing numpy or raytrain's
data layer."""


class Passes:
    """The pass each of a run's domain streams is in: set by the workers before each pass, read by every crop task,
    so pass ``k`` cuts the ids ``k * n .. (k + 1) * n - 1`` (the workers draw the same domains every step, so they
    set the same ``k``). Held by a 0-CPU actor: :class:`PassCounter`, or the run's progress board, which is one."""

    def __init__(self) -> None:
        self.k: dict[str, int] = {}

    def set_pass(self, domain: str, k: int) -> None:
        self.k[domain] = k

    def get_pass(self, domain: str) -> int:
        return self.k.get(domain, 0)
