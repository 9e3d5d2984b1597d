"""
simdex C++ core: SIMD kernels, exact search, top-k
"""
from __future__ import annotations
import numpy
import numpy.typing
from simdex import FormatError
import typing
__all__: list[str] = ['FlatIndex', 'FormatError', 'LinearProjection', 'MomentAccumulator', 'amx_bf16_usable', 'crc32c', 'crc32c_hardware', 'dot_f32', 'dot_i8', 'dot_rows_f32', 'dot_rows_i8', 'gemm_scores_f32', 'gemm_scores_i8', 'get_num_threads', 'pack_nr_f32', 'read_bandwidth', 'select_ge_f32', 'set_num_threads', 'set_simd', 'simd_info']
class MomentAccumulator:
    """
    Count, mean and scatter of float32 rows, accumulated over batches in double.
    """
    def __init__(self, dim: typing.SupportsInt | typing.SupportsIndex, bf16: bool = False) -> None:
        ...
    def add(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> None:
        ...
    def get_state(self) -> tuple[int, numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64]]:
        ...
    def mean(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def reset(self) -> None:
        ...
    def scatter(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def second_moment(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def set_state(self, count: typing.SupportsInt | typing.SupportsIndex, shift: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], sum: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], scatter: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    @property
    def bf16(self) -> bool:
        ...
    @property
    def count(self) -> int:
        ...
    @property
    def dim(self) -> int:
        ...
class LinearProjection:
    """
    y = x W^T - bias on the blocked SIMD GEMM.
    """
    def __init__(self, matrix: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], bias: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None) -> None:
        ...
    def apply(self, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def in_dim(self) -> int:
        ...
    @property
    def out_dim(self) -> int:
        ...
class FlatIndex:
    metadata: str
    @staticmethod
    def load(path: str, mmap: bool = False) -> FlatIndex:
        ...
    @staticmethod
    def load_bytes(buffer: typing.Any) -> FlatIndex:
        ...
    def __init__(self, dim: typing.SupportsInt | typing.SupportsIndex, metric: str = 'cosine', dtype: str = 'float32', keep_originals: bool = False, partitions: typing.SupportsInt | typing.SupportsIndex = 0, keep_int8: bool = False) -> None:
        ...
    def __len__(self) -> int:
        ...
    def add(self, vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None) -> int:
        ...
    def calibration(self) -> numpy.typing.NDArray[numpy.float32]:
        """
        int8 calibration as a (2, dim) float32 array: offsets, then steps (binary: centre, then scale).
        """
    def codes(self, ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> typing.Any:
        ...
    def contains(self, id: typing.SupportsInt | typing.SupportsIndex) -> bool:
        ...
    def centroids(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def list_sizes(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    def train_partitions(self, vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], iterations: typing.SupportsInt | typing.SupportsIndex = 10, max_rows_per_centroid: typing.SupportsInt | typing.SupportsIndex = 256, seed: typing.SupportsInt | typing.SupportsIndex = 1234, progress: typing.Callable | None = None) -> None:
        """
        k-means centroids from the vectors; stored rows move to their nearest new centroid. progress(done, total) is called after seeding and after each iteration.
        """
    def extra_sections(self) -> list:
        """
        Sections kept with the index for the Python layer: (name, dtype, rows, cols, required, bytes) tuples.
        """
    def ids(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    def memory_breakdown(self) -> dict:
        ...
    def memory_usage(self) -> int:
        ...
    def reconstruct(self, ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def remove(self, ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> int:
        ...
    def reset(self) -> None:
        ...
    def save(self, path: str) -> None:
        ...
    def search(self, queries: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, min_score: typing.SupportsFloat | typing.SupportsIndex = ..., filter: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, rescore: typing.SupportsInt | typing.SupportsIndex = 0, max_distance: typing.SupportsFloat | typing.SupportsIndex = ..., nprobe: typing.SupportsInt | typing.SupportsIndex = 0, exact: bool = False) -> tuple:
        ...
    def set_extra_sections(self, sections: list) -> None:
        ...
    def to_bytes(self) -> bytes:
        """
        The index file's bytes (what save writes), for load_bytes and tests.
        """
    def train(self, vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> None:
        ...
    @property
    def dim(self) -> int:
        ...
    @property
    def dtype(self) -> str:
        ...
    @property
    def keeps_originals(self) -> bool:
        ...
    @property
    def keeps_int8(self) -> bool:
        ...
    @property
    def nprobe(self) -> int:
        ...
    @nprobe.setter
    def nprobe(self, arg1: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def partitions(self) -> int:
        ...
    @property
    def partitions_trained(self) -> bool:
        ...
    @property
    def mapped(self) -> bool:
        ...
    @property
    def metric(self) -> str:
        ...
    @property
    def next_id(self) -> int:
        ...
    @property
    def trained(self) -> bool:
        ...
def amx_bf16_usable() -> bool:
    """
    True when PCA can accumulate its covariance with bf16 products on AMX tiles here and now.
    """
def crc32c(data: typing.Any, crc: typing.SupportsInt | typing.SupportsIndex = 0, portable: bool = False) -> int:
    """
    CRC32C of a bytes-like object, as index files use it (for tests and tools).
    """
def crc32c_hardware() -> bool:
    """
    True when CRC32C uses the CPU's crc32 instruction.
    """
def dot_f32(a: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], b: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], isa: str = '') -> float:
    ...
def dot_i8(a: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], b: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], isa: str = '') -> int:
    ...
def dot_b1(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], code: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], isa: str = '') -> float:
    ...
def sums_rows_b1(w: typing.Annotated[numpy.typing.ArrayLike, numpy.int16], x: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def dot_rows_f32(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def dot_rows_i8(q: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], x: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def hamming_b1(a: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], b: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], isa: str = '') -> int:
    ...
def hamming_rows_b1(q: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], x: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], isa: str = '') -> numpy.typing.NDArray[numpy.uint32]:
    ...
def hamming_select_b1(q: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], x: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], dim: typing.SupportsInt, thr: typing.SupportsInt, isa: str = '') -> list:
    ...
def gemm_scores_f32(q: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def gemm_scores_i8(q: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], x: typing.Annotated[numpy.typing.ArrayLike, numpy.int8], kc_step: typing.SupportsInt | typing.SupportsIndex = 64, isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def get_num_threads() -> int:
    """
    Threads used by heavy calls.
    """
def pack_nr_f32(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], isa: str = '') -> numpy.typing.NDArray[numpy.float32]:
    ...
def read_bandwidth(nbytes: typing.SupportsInt | typing.SupportsIndex = 1073741824, repeats: typing.SupportsInt | typing.SupportsIndex = 5) -> float:
    """
    Measured RAM read bandwidth in bytes/s with all threads (a benchmark helper).
    """
def select_ge_f32(s: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], t: typing.SupportsFloat | typing.SupportsIndex, isa: str = '') -> numpy.typing.NDArray[numpy.int64]:
    ...
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Sets the threads used by heavy calls; 0 means all cores this process may use.
    """
def set_simd(isa: str) -> None:
    """
    Selects the SIMD level used from now on (for tests and benchmarks).
    """
def simd_info() -> dict:
    """
    SIMD levels compiled into this build, supported by this CPU, and active now; 'int8' names the int8
    kernels the active level runs, 'binary' the 1-bit kernels.
    """
__version__: str = '0.1.0'
