"""tiling: how a product is cut for the GEMM micro-kernel (gemm.py) on this host.

VW is the host's vector width: 16 floats with AVX-512 (32 vector registers), else 8 (16).
A tile holds MR rows x (S * U) vectors of accumulators, at most 24 with 32 registers (12
with 16): the broadcasts of the MR rows and one panel vector take the rest. MR minimises a
cost model of the k-loop over all tiles of the rows (FMA throughput, FMA latency, loads, and
the narrower tiles of the last rows); a single row (a GEMV) takes wide panels instead. A
product of few columns uses half-width vectors when that pads less.

    acc[MR][S * U]          S segments (the slices of a cell's gates), U vectors each
    panel: K x (S * U * VW) floats (emit_pack.py)
    rows in blocks of MC, so that MC rows of `a` stay in L2
"""
from __future__ import annotations

from dataclasses import dataclass

from graphrnn.ir import LoweringError, Node, Op
from graphrnn.isa import current_isa

from .strides import ONE, ZERO, Layout, Lin, lin, product

A_BLOCK_BYTES = 96 * 1024        # rows of `a` per block: MC * K * 4 bytes stays in L2
# a panel's block of KC k-rows stays in L1 (32 KB on Zen 3) beside the rows of `a`: with
# AVX2 tiles; AVX-512 tiles were tuned walking their panels whole and measured no better
PANEL_BLOCK_BYTES = 24 * 1024
MAX_SEGMENTS = 8
FMA_CHAINS = 8                   # independent FMAs in flight: latency 4 x 2 pipes (Zen 3-5)


def vector_width() -> int:
    """Floats per vector register of the target ISA: 16 with AVX-512, else 8."""
    return current_isa().vector_width


def registers() -> int:
    """Vector registers of the target ISA (32 with AVX-512, 16 with AVX2)."""
    return current_isa().registers


def accumulators() -> int:
    """How many accumulators a tile may hold (registers left for the operands)."""
    return registers() * 3 // 4


def vectors_first(mr: int, nvec: int) -> bool:
    """Whether a tile's k-step loads its panel vectors first, then broadcasts one row at a
    time (nvec + 1 operand registers), rather than the MR broadcasts first, then one panel
    vector at a time (MR + 1): the order that keeps the tile within the registers, the
    broadcasts first when both do."""
    return mr * nvec + mr + 1 > registers() and mr * nvec + nvec + 1 <= registers()


def k_chains(mr: int, nvec: int) -> int:
    """How many k-steps a tile of mr x nvec accumulators runs side by side (kloop.py): enough
    independent FMA chains to cover the FMA latency on both FMA pipes (4 cycles x 2 = 8),
    at most 4."""
    return max(1, min(4, FMA_CHAINS // (mr * nvec)))


def narrow(columns: int, vw: int) -> int:
    """The vector width for `columns` columns: half-width vectors when that pads less on a
    narrow product (24 columns: 3 x 8, not 2 x 16)."""
    if vw > 8 and columns <= 4 * vw and -(-columns // 8) * 8 < -(-columns // vw) * vw:
        return 8
    return vw


@dataclass(frozen=True)
class GemmPlan:
    """Static tiling of one product: K (may grow with T), N, rows per tile, vector width,
    vectors per segment in a panel (U), segments (S), and the right operand's layout."""
    k: Lin
    n: int
    mr: int
    vw: int
    nv: int
    segments: int = 1
    transpose: bool = False
    kc: int = 0                     # k-rows per block of a panel (0: the panel is walked whole)

    @property
    def seg_len(self) -> int:
        return self.n // self.segments

    @property
    def seg_width(self) -> int:
        """Columns of one segment in a full panel."""
        return self.nv * self.vw

    @property
    def full(self) -> int:
        """Number of full panels."""
        return self.seg_len // self.seg_width

    @property
    def last_vectors(self) -> int:
        """Vectors per segment in the last, narrower panel (0: none)."""
        return -(-(self.seg_len - self.full * self.seg_width) // self.vw)

    @property
    def panels(self) -> int:
        return self.full + (1 if self.last_vectors else 0)

    @property
    def floats(self) -> Lin:
        """Size of the packed panels."""
        return self.k * (self.segments * (self.full * self.seg_width
                                          + self.last_vectors * self.vw))

    @property
    def mc(self) -> int:
        k = self.kc or (self.k.c if self.k.const else 512)
        rows = A_BLOCK_BYTES // (4 * max(k, 1))
        return max(self.mr, rows // self.mr * self.mr)


def make_plan(k: Lin | int, n: int, rows: Lin | int, *, segments: int = 1,
              transpose: bool = False, vw: int | None = None) -> GemmPlan:
    """The tiling of a [rows, k] @ [k, n] product (n split in `segments` equal segments)."""
    vw = narrow(n // segments, vw or vector_width())
    rows = lin(rows)
    need = max(1, -(-(n // segments) // vw))
    budget = accumulators()
    if rows == ONE:
        u = max(1, min(need, 8 // segments))
        return GemmPlan(lin(k), n, 1, vw, u, segments, transpose)
    u = max(1, min(need, 4 // segments))
    mr = _rows_per_tile(rows.c if rows.const else 1 << 12, u * segments, vw, budget)
    return GemmPlan(lin(k), n, mr, vw, u, segments, transpose, _k_block(lin(k), u * segments * vw))


def _k_block(k: Lin, width: int) -> int:
    """KC: the k-rows of a panel `width` floats wide that fill at most PANEL_BLOCK_BYTES, in
    equal blocks (0: the whole panel fits, K is known at run time only, or AVX-512)."""
    if not k.const or k.c * width * 4 <= PANEL_BLOCK_BYTES or registers() > 16:
        return 0
    blocks = -(-k.c * width * 4 // PANEL_BLOCK_BYTES)
    return -(-k.c // blocks)


def _rows_per_tile(rows: int, nvec: int, vw: int, budget: int) -> int:
    """MR minimising the k-loop's cycles over all tiles of `rows` rows (ties: more rows)."""
    per_fma = 1.0 if vw >= 16 else 0.5

    def cycles(mr: int) -> float:
        if mr == 0:
            return 0.0
        return max(mr * nvec * per_fma, 4.0, (mr + nvec) / 2) + 1.0

    best, best_cost = 1, float("inf")
    for mr in range(1, max(1, min(8, budget // nvec)) + 1):
        if mr * nvec + min(mr, nvec) + 1 > registers() and mr > 1:
            continue                    # the operands would not fit beside the accumulators
        cost = rows // mr * cycles(mr) + cycles(rows % mr)
        if cost <= best_cost * 1.001:
            best, best_cost = mr, min(cost, best_cost)
    return best


def plan(node: Node, segments: int = 1) -> GemmPlan:
    """The plan of a MATMUL node (its weights' dims must be fixed)."""
    a, b = (x.type for x in node.inputs)
    transpose = bool(node.attrs.get("transpose_b"))
    k, n = (b.shape[1], b.shape[0]) if transpose else b.shape
    if not isinstance(k, int) or not isinstance(n, int):
        raise LoweringError(f"matmul weights must have fixed dims, got {b}")
    return make_plan(k, n, product(a.shape[:-1]), segments=segments, transpose=transpose)


def packed_floats(node: Node, segments: int = 1) -> Lin:
    """Size of the packed right operand of a matmul node (0 for other ops)."""
    return plan(node, segments).floats if node.op == Op.MATMUL else ZERO


def operand_layouts(lead: tuple[Lin, ...], layouts: list[tuple[Layout, Lin]]
                    ) -> list[Layout] | None:
    """Each (layout, last dim) broadcast to lead + (last,), as row layouts over `lead`
    with the column stride appended; None when a column stride is not 0 or 1."""
    out = []
    for lay, last in layouts:
        try:
            wide = lay.broadcast_to(lead + (last,))
        except LoweringError:
            return None
        if wide.strides[-1] not in (ZERO, ONE) and last != ONE:
            return None
        out.append(wide)
    return out


def epilogue_layouts(a: Layout, out: Layout, extra: list[Layout]) -> list[Layout] | None:
    """Whether a product of `a` into `out` can apply a FUSED epilogue reading `extra`
    (each broadcast to out's shape, contiguous or broadcast along N): the layouts, or None."""
    lead = out.shape[:-1]
    if a.shape[:-1] != lead:
        return None
    return operand_layouts(lead, [(x, out.shape[-1]) for x in extra])


__all__ = ["GemmPlan", "make_plan", "plan", "packed_floats", "vector_width", "accumulators",
           "registers", "vectors_first", "k_chains",
           "narrow", "operand_layouts", "epilogue_layouts", "MAX_SEGMENTS", "A_BLOCK_BYTES",
           "PANEL_BLOCK_BYTES"]
