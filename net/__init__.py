"""Deep Compression (pruning, weight sharing, Huffman coding) for AlexNet on CIFAR-10, and
for LeNet-300-100, LeNet-5 and VGG-16 on CIFAR-10/100, MNIST and Fashion-MNIST."""
