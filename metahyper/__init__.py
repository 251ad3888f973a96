"""metahyper: few-shot meta-learning with convolutional hypernetworks.

Implements Babu, Savarese & Maire, "HyperNetwork Designs for Improved Classification and
Robust Meta-Learning": hyper residual networks (section 3), their MAML training (section 4,
Algorithm 2) and the cross-domain experiments (section 5.4).
"""

__version__ = "0.1.0"
