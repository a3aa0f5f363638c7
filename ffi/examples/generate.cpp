// Generates one image per class with a DiT and a VMAE (default: the embedded Fashion-MNIST demo)
// and writes them side by side as a PNG, with a small RAII wrapper as a C++ app would write one.
//
//   c++ -std=c++17 -Iffi/include ffi/examples/generate.cpp target/release/libldmae.a -lz -lm -lpthread -ldl -o generate
//   ./generate OUT.png SEED CLASS[,CLASS...] [DIT.pack VMAE.pack]
#include "ldmae.h"
#include "png.h"

#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(LdmaeStatus status, const char *what) {
    if (status != LDMAE_OK) throw std::runtime_error(std::string(what) + ": " + ldmae_last_error());
}

struct Generator {
    std::unique_ptr<LdmaeGenerator, decltype(&ldmae_generator_free)> handle{nullptr, ldmae_generator_free};

    Generator(const char *dit, const char *vmae) {
        LdmaeOptions opts;
        ldmae_options_default(&opts);
        opts.device = 1;  // the CPU
        LdmaeGenerator *g = nullptr;
        check(ldmae_generator_open(dit, vmae, &opts, &g), "open");
        handle.reset(g);
    }

    // One RGB image per class; the pack's own schedule (steps 0, cfg 0).
    std::vector<LdmaeImage> generate(const std::vector<int32_t> &classes, uint64_t seed) {
        std::vector<LdmaeImage> out(classes.size());
        check(ldmae_generate(handle.get(), classes.data(), (uint32_t)classes.size(), seed, 0, 0.0f, nullptr, nullptr,
                             out.data()),
              "generate");
        return out;
    }
};

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: %s OUT.png SEED CLASS[,CLASS...] [DIT.pack VMAE.pack]\n", argv[0]);
        return 2;
    }
    try {
        std::vector<int32_t> classes;
        std::stringstream list(argv[3]);
        for (std::string c; std::getline(list, c, ',');) classes.push_back(std::stoi(c));
        Generator generator(argc == 6 ? argv[4] : nullptr, argc == 6 ? argv[5] : nullptr);
        std::vector<LdmaeImage> images = generator.generate(classes, std::stoull(argv[2]));
        const uint32_t w = images[0].width, h = images[0].height, n = (uint32_t)images.size();
        std::vector<uint8_t> strip((size_t)w * n * h * 3);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t y = 0; y < h; y++)
                memcpy(&strip[((size_t)y * w * n + (size_t)i * w) * 3], images[i].pixels + (size_t)y * images[i].stride,
                       (size_t)w * 3);
        for (LdmaeImage &image : images) ldmae_image_free(&image);
        if (png_write(argv[1], strip.data(), w * n, h, 3)) throw std::runtime_error("cannot write the PNG");
        fprintf(stderr, "wrote %u images of %ux%u to %s\n", n, w, h, argv[1]);
    } catch (const std::exception &e) {
        fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
