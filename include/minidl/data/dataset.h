// Data sets on disk, by format, auto-detected from a directory's files:
//
//   idx          MNIST's four IDX files (plain or gzip): MNIST, Fashion-MNIST, KMNIST, EMNIST-style
//   cifar10      CIFAR-10's binary version: data_batch_1..5.bin and test_batch.bin, records of a
//                label byte and 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major);
//                batches.meta.txt names the classes
//   cifar100     CIFAR-100's binary version: train.bin and test.bin, records of a coarse label, a
//                fine label and 3072 pixel bytes; fine labels (100 classes, fine_label_names.txt),
//                or with cifar100-coarse the 20 coarse ones (coarse_label_names.txt)
//   imagefolder  root/train/<class>/*.{png,jpg,jpeg,bmp} and root/test/<class>/..., as
//                torchvision's ImageFolder reads them: classes sorted by name, an image's label
//                its class's index; decoded through the bounded image path (data/image.h),
//                converted to `channels` and resized to image_size x image_size, the decoded set
//                cached under root/.minidl-cache/
//
// The CIFAR directories are the ones their archives unpack to (cifar-10-batches-bin,
// cifar-100-binary) or their parent. Every reader checks sizes against the format before it
// allocates: a file must hold whole records, and no file is read past its format's size.
#pragma once

#include <string>

#include "minidl/data/idx.h"

namespace minidl {

struct DataOptions {
  std::string format = "auto";  // auto | idx | cifar10 | cifar100 | cifar100-coarse | imagefolder
  int64_t train_limit = 0, test_limit = 0;  // > 0: the first N examples of the split
  bool load_train = true;                   // false: the test split alone (eval)
  int image_size = 32;                      // imagefolder: images resized to this square
  int channels = 3;                         // imagefolder: 3 (RGB) or 1 (grey)
  // "auto": MNIST's published constants for IDX data (as PyTorch's MNIST examples and the
  // peer), the training set's own per-channel statistics for every other format; "dataset":
  // the training set's statistics for IDX data too.
  std::string normalize = "auto";
  bool cache = true;  // imagefolder: keep and reuse the decoded set
};

// The format of the data in dir ("idx", "cifar10", "cifar100", "imagefolder"), or InputError
// naming dir and what each format needs.
std::string detect_data_format(const std::string& dir);

// Loads the train and test splits of the data set in dir (the test split only when
// options.load_train is false) and sets their per-channel mean and std (options.normalize).
Mnist load_dataset(const std::string& dir, const DataOptions& options = {});

// Per-channel mean and population std of a split's pixels, as fractions of 255.
void dataset_statistics(const Dataset& data, std::vector<float>& mean, std::vector<float>& std);

}  // namespace minidl
