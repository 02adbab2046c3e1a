"""Deep Compression for AlexNet on CIFAR-10: pruning, weight sharing, Huffman coding."""
