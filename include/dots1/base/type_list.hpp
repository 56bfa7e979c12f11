// dots1/base/type_list.hpp — compile-time lists of types: the layer types a stack may hold, and the cache
// states and products derived from them.
#pragma once

#include <type_traits>
#include <variant>

namespace dots1 {

template <class... T>
struct TypeList {
  static constexpr int size = sizeof...(T);
};

namespace type_list_detail {

template <class List, class T>
struct contains;
template <class... L, class T>
struct contains<TypeList<L...>, T> : std::bool_constant<(std::is_same_v<L, T> || ...)> {};

template <class Done, class... Rest>
struct unique;
template <class... Done>
struct unique<TypeList<Done...>> {
  using type = TypeList<Done...>;
};
template <class... Done, class T, class... Rest>
struct unique<TypeList<Done...>, T, Rest...>
    : std::conditional_t<contains<TypeList<Done...>, T>::value, unique<TypeList<Done...>, Rest...>, unique<TypeList<Done..., T>, Rest...>> {};

template <class... Lists>
struct concat;
template <>
struct concat<> {
  using type = TypeList<>;
};
template <class... A>
struct concat<TypeList<A...>> {
  using type = TypeList<A...>;
};
template <class... A, class... B, class... Rest>
struct concat<TypeList<A...>, TypeList<B...>, Rest...> : concat<TypeList<A..., B...>, Rest...> {};

template <class List, template <class...> class To>
struct apply;
template <class... T, template <class...> class To>
struct apply<TypeList<T...>, To> {
  using type = To<T...>;
};

}  // namespace type_list_detail

/// The list without repeats, first occurrences kept in order.
template <class... T>
using UniqueTypes = typename type_list_detail::unique<TypeList<>, T...>::type;

/// The lists one after another.
template <class... Lists>
using ConcatTypes = typename type_list_detail::concat<Lists...>::type;

/// To<T...> for a TypeList<T...>: e.g. ApplyTypes<List, std::variant>.
template <class List, template <class...> class To>
using ApplyTypes = typename type_list_detail::apply<List, To>::type;

}  // namespace dots1
