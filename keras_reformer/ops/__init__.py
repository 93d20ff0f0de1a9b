"""Public ops of keras_reformer."""
from keras_reformer.ops.cached_attention import window_attention
from keras_reformer.ops.chunked_attention import (chunked_attention, combine_hash_rounds,
                                                  duplicate_counts, shared_qk_keys)
from keras_reformer.ops.chunking import (look_around, merge_chunks, pad_to_multiple,
                                         scan_sequence_chunks, shift_chunks, split_chunks)
from keras_reformer.ops.hashing import default_bucket_factors, default_num_buckets, hash_buckets
from keras_reformer.ops.masks import apply_attention_masks, mask_values
from keras_reformer.ops.sorting import gather_along_sequence, inverse_permutation, sort_by_bucket
from keras_reformer.ops.portable_random import portable_normal
