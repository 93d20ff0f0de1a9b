"""Public layers of keras_reformer."""
from keras_reformer.layers.axial_position_embedding import AxialPositionEmbedding
from keras_reformer.layers.position_embedding import PositionEmbedding
from keras_reformer.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
