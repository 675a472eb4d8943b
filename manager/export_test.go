// SPDX-License-Identifier: Apache-2.0

package manager

// ToValue is toValue, for the external tests and benchmarks.
var ToValue = toValue
