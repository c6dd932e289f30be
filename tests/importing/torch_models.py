"""Hand-written PyTorch models for the importer's tests (`netdsl import tests/importing/torch_models.py:NAME`)."""

import torch
import torch.nn.functional as F
from torch import nn


class MnistNet(nn.Module):
    """PyTorch's MNIST example (github.com/pytorch/examples, mnist/main.py): 1,199,882 params."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


class LeNet5(nn.Module):
    """LeNet-5 as nn.Sequential stages, nn.Sigmoid modules, nn.Flatten, a softmax head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.MaxPool2d(2, 2)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(256, 120), nn.Tanh(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)
        )

    def forward(self, x):
        return torch.softmax(self.classifier(self.features(x)), dim=1)


class ViewNet(nn.Module):
    """The 2017 MNIST example: x.view(-1, 320), F.dropout with training=self.training, BatchNorm1d."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.bn = nn.BatchNorm1d(320, eps=1e-4, momentum=0.2)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = x.view(x.size(0), -1)
        x = self.bn(x)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, 0.3, training=self.training)
        return self.fc2(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """A small ResNet: projection shortcuts, stride-2 convs with padding 1 (not TF `same` on even sizes)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.layer3 = nn.Sequential(BasicBlock(32, 64, 2), BasicBlock(64, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.pool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)


class Inception(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = nn.Conv2d(cin, 8, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, 8, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(cin, 6, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class InceptionNet(nn.Module):
    """Concat (inception-like) blocks, F.gelu/silu/leaky_relu/elu, torch.add, AvgPool2d(padding=1), x.mean((2, 3))."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.inc1 = Inception(16)
        self.act = nn.GELU()
        self.inc2 = Inception(32)
        self.pool = nn.AvgPool2d(3, 2, padding=1)
        self.proj = nn.Conv2d(32, 32, 1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))  # a ReLU's output: max pooling with padding 1 may pad with zeros
        x = self.act(self.inc1(x))
        y = F.silu(self.inc2(x))
        x = torch.add(x, y)
        x = self.pool(x)
        x = F.leaky_relu(self.proj(x), 0.1)
        x = F.elu(x)
        return self.head(x.mean((2, 3)))


class MLP(nn.Module):
    """A vector input (--input 784), nn.Sequential of Linear/ReLU, Identity, Softmax/LogSoftmax modules."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
            nn.Linear(64, 64), nn.ReLU(), nn.Identity(), nn.Linear(64, 10), nn.LogSoftmax(dim=1),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)


def make_mlp():
    """A function returning a module."""
    return MLP()


mlp_instance = MLP()


# ---- what cannot be imported -------------------------------------------------------------


class Branchy(nn.Module):
    """Control flow on the data: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class _Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:
            return x
        return x * 2


class DeepBranchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(784, 10), _Gate())

    def forward(self, x):
        return self.layer(x)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=2))

    def forward(self, x):
        return self.features(x).flatten(1)


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.Sequential(nn.Linear(10, 10), nn.LSTM(10, 10))

    def forward(self, x):
        return self.rnn(x)


class Multiply(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x) * 2


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        return self.fc(self.fc(x))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x, y):
        return self.fc(x) + y


def not_a_module():
    return 42


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(10, width)


# ---- graphs that need labels, and the odd shapes -----------------------------------------


class Crossing(nn.Module):
    """Skips that cross (not series-parallel): written with labels, `from` and named merges."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        a = F.relu(self.a(x))
        b = self.b(a)
        c = self.c(a + b)
        return self.fc((c + a + b).mean((2, 3)))


class UNetish(nn.Module):
    """A skip across down- and upsampling, concatenated: `concat { ... | identity }`; a squeeze-excite-like
    1x1 map after AdaptiveAvgPool2d(1) (a reshape back to 1x1xC); ZeroPad2d; Upsample."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.dec = nn.Conv2d(16, 8, 2)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        e = F.relu(self.enc(x))
        m = self.up(F.relu(self.mid(self.pool(e))))
        x = F.relu(self.dec(self.pad(torch.cat((m, e), dim=1))))
        x = torch.sigmoid(self.excite(self.squeeze(x)))
        return self.head(torch.flatten(x, 1))


class GroupedNet(nn.Module):
    """Grouped, dilated and depthwise convolutions, padding, group norm and a channel gate (x * s)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(4, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, groups=2, dilation=2, padding=2, bias=False)
        self.dw = nn.Conv2d(8, 16, 3, stride=2, groups=8)  # depthwise, multiplier 2
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))
        self.norm = nn.GroupNorm(4, 16)
        self.gate = nn.Linear(16, 16)
        self.head = nn.Linear(16, 6)
        self.ln = nn.LayerNorm(6, eps=1e-4)

    def forward(self, x):
        x = self.norm(self.pad(self.dw(self.grouped(F.relu(self.stem(x))))))
        s = torch.sigmoid(self.gate(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))
        x = torch.mul(x, s.view(-1, 16, 1, 1)) * x
        return self.ln(self.head(x.mean((2, 3))))


class SeqNet(nn.Module):
    """1-D convolutions and pools on a (N, C, L) sequence, batch norm over it, a flatten, a layer norm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool1d(2)
        self.c2 = nn.Conv1d(8, 8, 3, dilation=2, bias=False)
        self.avg = nn.AvgPool1d(2)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(24, 5)
        self.ln = nn.LayerNorm(24)

    def forward(self, x):
        x = self.bn(self.avg(self.c2(self.pool(F.relu(self.c1(x))))))
        return self.fc(self.ln(torch.flatten(x, 1)))
